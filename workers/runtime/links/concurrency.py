"""The link that keeps a tenant's jobs within its ``max_in_flight`` (and a generate
session's within ``max_in_flight_per_session``) across every replica: a job over the limit
waits its turn, lending its slot to other tenants' jobs meanwhile, and runs holding a lease
(docs/decisions/0043-concurrency-per-tenant.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from contracts.generate import GenerateRequest
from providers.call_retry import CallRetryPolicy, call_with_retry
from providers.errors import ProviderError
from workers.metrics import WorkerMetrics
from workers.runtime.lanes import LaneGate
from workers.runtime.links.admission import answer_expired
from workers.runtime.links.chain import Job, Link
from workers.runtime.links.outcomes import Outcomes
from workers.settings import TenantSettings
from workers.tenant_leases import Lease, TenantLeases, session_key, tenant_key

log = logging.getLogger(__name__)


class TakeTurn(Link):
    """A job of a limited tenant runs holding a lease in its tenant's set (and its
    session's); while the set is full it waits, until a place frees or its deadline passes
    (then it is answered `timeout`, as Deadline answers). Jobs of other tenants pass through
    without a Redis call."""

    def __init__(
        self,
        outcomes: Outcomes,
        leases: TenantLeases,
        tenants: dict[str, TenantSettings],
        retry: CallRetryPolicy,
        gate: LaneGate | None = None,
    ) -> None:
        self._outcomes = outcomes
        self._metrics: WorkerMetrics = outcomes.metrics
        self._leases = leases
        self._tenants = {
            tenant: limits
            for tenant, limits in tenants.items()
            if limits.max_in_flight is not None or limits.max_in_flight_per_session is not None
        }
        self._retry = retry
        self._gate = gate
        # Set (and replaced) whenever this worker gives a place back: its waiters ask again.
        self._freed = asyncio.Event()

    @property
    def limits_any(self) -> bool:
        """Whether any tenant has a limit (else the link is left out of the chain)."""
        return bool(self._tenants)

    async def __call__(self, job: Job) -> None:
        limits = self._tenants.get(job.request.tenant)
        places = self._places(job, limits) if limits is not None else None
        if not places:
            await self.call_next(job)
            return
        keys, counts = places
        try:
            lease = await self._turn(job, keys, counts)
        except ProviderError as exc:
            log.error("job %s: its tenant's leases are unavailable: %s", job.where, exc)
            message = f"the fleet's concurrency leases are unavailable ({exc.detail}); try again"
            await self._outcomes.settle(job, exc, exc.detail, message)
            await job.stream.flush()
            return
        if lease is None:
            message = (
                "the request's deadline passed while it waited its turn "
                f"(tenant {job.request.tenant}'s max_in_flight): it was not run"
            )
            await answer_expired(job, self._metrics, message)
            return
        held = self._metrics.tenant_leases.labels(self._metrics.kind, job.request.tenant)
        held.inc()
        try:
            await self.call_next(job)
        finally:
            held.dec()
            await self._give_back(lease)

    def _places(self, job: Job, limits: TenantSettings) -> tuple[list[str], list[int]] | None:
        """The sets the job takes a place in, and each one's limit."""
        namespace, tenant = self._leases.namespace, job.request.tenant
        keys: list[str] = []
        counts: list[int] = []
        if limits.max_in_flight is not None:
            keys.append(tenant_key(namespace, tenant))
            counts.append(limits.max_in_flight)
        request = job.request
        per_session = limits.max_in_flight_per_session
        if per_session is not None and isinstance(request, GenerateRequest) and request.session_id:
            keys.append(session_key(namespace, tenant, request.session_id))
            counts.append(per_session)
        return (keys, counts) if keys else None

    async def _take(self, keys: list[str], counts: list[int]) -> Lease | None:
        return await call_with_retry(
            lambda: self._leases.take(keys, counts), self._retry, name="tenant_leases.take"
        )

    async def _turn(self, job: Job, keys: list[str], counts: list[int]) -> Lease | None:
        """A lease, once the sets have room; None when the job's deadline passed first."""
        lease = await self._take(keys, counts)
        if lease is not None:
            return lease
        waiting = self._metrics.tenant_waiting.labels(self._metrics.kind, job.request.tenant)
        waiting.inc()
        if self._gate is not None:
            self._gate.waiting(job.lane)
        try:
            deadline_ms = job.request.deadline_ms
            while lease is None:
                freed = self._freed
                wait_s = self._leases.poll_s
                if deadline_ms is not None:
                    left_s = deadline_ms / 1000 - time.time()
                    if left_s <= 0:
                        return None
                    wait_s = min(wait_s, left_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(freed.wait(), wait_s)
                lease = await self._take(keys, counts)
            return lease
        finally:
            waiting.dec()
            if self._gate is not None:
                self._gate.resumed(job.lane)

    async def _give_back(self, lease: Lease) -> None:
        try:
            await self._leases.release(lease)
        except ProviderError as exc:  # it expires by itself
            log.warning("a tenant lease could not be given back: %s", exc)
        self._freed.set()
        self._freed = asyncio.Event()
