"""Prometheus metrics of one worker process (a registry per worker, no global state)."""

from __future__ import annotations

import enum
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contracts.usage import Usage

# Tenants come from request headers and payloads, which any producer writes: past this many
# distinct ones a worker counts the rest under OTHER_TENANTS, so that made-up tenants cannot
# grow the metrics without bound. The tenants the settings name always keep their own.
MAX_TENANT_LABELS = 64
OTHER_TENANTS = "(other)"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Outcome(enum.StrEnum):
    """How one delivery of a job ended (the ``outcome`` label of ``fleet_jobs``)."""

    OK = "ok"  # the handler's final reply was sent
    ERROR = "error"  # an error reply was sent
    RETRIED = "retried"  # copied to a delayed retry topic
    REPLAYED = "replayed"  # done before: the stored final reply was sent again
    EXPIRED = "expired"  # its deadline had passed before it started
    REJECTED = "rejected"  # not a valid request: dead-lettered
    CANCELLED = "cancelled"  # its caller cancelled it while it ran
    SKIPPED_CANCELLED = "skipped_cancelled"  # cancelled before it started: not run


class _TenantChildren(NamedTuple):
    queued: Gauge
    in_flight: Gauge
    served: Counter
    parked: Counter
    waited: Counter


class TenantTotals(NamedTuple):
    """One tenant's figures on one lane, as this worker's metrics hold them."""

    in_flight: int
    served: float
    parked: int
    waited: int


class WorkerMetrics:
    def __init__(self, kind: str, named_tenants: frozenset[str] = frozenset()) -> None:
        self.kind = kind
        self._named_tenants = named_tenants
        self._labelled_tenants: set[str] = set()
        self.registry = CollectorRegistry()
        self._outcomes: dict[Outcome, Counter] = {}
        self.jobs = Counter(
            "fleet_jobs",
            f"Jobs by outcome ({', '.join(Outcome)})",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "fleet_job_errors",
            "Error replies by error code",
            ["kind", "code"],
            registry=self.registry,
        )
        self.redeliveries = Counter(
            "fleet_redeliveries",
            "Jobs copied to a delayed retry topic, by its delay",
            ["kind", "delay_s"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "fleet_dead_letters",
            "Messages sent to the dead-letter topic",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "fleet_job_duration_seconds",
            "From the start of a job to its stored final reply",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_chunk = Histogram(
            "fleet_time_to_first_chunk_seconds",
            "From the start of a job to its first chunk",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "fleet_jobs_in_flight", "Jobs running now", ["kind"], registry=self.registry
        )
        self.tenant_leases = Gauge(
            "fleet_tenant_leases",
            "Leases this worker holds for running jobs of a tenant with max_in_flight",
            ["kind", "tenant"],
            registry=self.registry,
        )
        self.tenant_waiting = Gauge(
            "fleet_tenant_jobs_waiting",
            "Jobs here waiting for their tenant's turn (max_in_flight)",
            ["kind", "tenant"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "fleet_tokens", "Tokens processed", ["kind", "type"], registry=self.registry
        )
        self.cost = Counter(
            "fleet_cost_usd",
            "What provider calls cost at the model catalogue's prices, in US dollars",
            ["kind", "provider", "model"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "fleet_batch_size",
            "Texts per model call of the embed batcher",
            ["kind"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.lag = Gauge(
            "fleet_consumer_lag",
            "Messages not yet consumed, per partition of each lane's request topic",
            ["kind", "partition", "lane"],
            registry=self.registry,
        )

        # Per tenant and lane (decision 0044): jobs fetched and waiting for a slot, running,
        # and the estimated cost of those that ended (contracts/job_cost.py: tokens for
        # generate, embed and rerank, seconds of audio for transcribe, characters for
        # speech).
        self.tenant_queued = Gauge(
            "fleet_tenant_jobs_queued",
            "Jobs fetched and waiting for a slot, per tenant",
            ["kind", "lane", "tenant"],
            registry=self.registry,
        )
        self.tenant_in_flight = Gauge(
            "fleet_tenant_jobs_in_flight",
            "Jobs running now, per tenant",
            ["kind", "lane", "tenant"],
            registry=self.registry,
        )
        self.tenant_served = Counter(
            "fleet_tenant_cost_served",
            "Estimated cost of the jobs that ended (tokens; audio seconds; characters), per tenant",
            ["kind", "lane", "tenant"],
            registry=self.registry,
        )
        self.tenant_spend = Counter(
            "fleet_tenant_spend_usd",
            "What the tenant's answered jobs cost at the model catalogue's prices, in US dollars",
            ["kind", "tenant"],
            registry=self.registry,
        )
        # Records parked beyond the tenant's share of a full window (decision 0045).
        self.tenant_parked = Counter(
            "fleet_tenant_jobs_parked",
            "Records parked beyond the tenant's share of a full lane's window, per tenant",
            ["kind", "lane", "tenant"],
            registry=self.registry,
        )
        # Jobs that waited in the fair queue for a slot: where the weights chose the order.
        self.tenant_waited = Counter(
            "fleet_tenant_jobs_waited",
            "Jobs that waited in the lane's fair queue for a slot, per tenant",
            ["kind", "lane", "tenant"],
            registry=self.registry,
        )
        self._tenant_children: dict[tuple[str, str], _TenantChildren] = {}

    def tenant_label(self, tenant: str) -> str:
        """``tenant`` as a metric label: itself, or OTHER_TENANTS past MAX_TENANT_LABELS."""
        if tenant in self._labelled_tenants or tenant in self._named_tenants:
            return tenant
        if len(self._labelled_tenants) >= MAX_TENANT_LABELS:
            return OTHER_TENANTS
        self._labelled_tenants.add(tenant)
        return tenant

    def tenant_spent(self, tenant: str, cost_usd: float) -> None:
        if cost_usd:
            self.tenant_spend.labels(self.kind, self.tenant_label(tenant)).inc(cost_usd)

    def tenant(self, lane: str, tenant: str) -> _TenantChildren:
        """The per-tenant metrics of ``tenant`` on ``lane``: looked up once per tenant."""
        tenant = self.tenant_label(tenant)
        children = self._tenant_children.get((lane, tenant))
        if children is None:
            labels = (self.kind, lane, tenant)
            children = self._tenant_children[lane, tenant] = _TenantChildren(
                self.tenant_queued.labels(*labels),
                self.tenant_in_flight.labels(*labels),
                self.tenant_served.labels(*labels),
                self.tenant_parked.labels(*labels),
                self.tenant_waited.labels(*labels),
            )
        return children

    def tenants(self, lane: str) -> dict[str, TenantTotals]:
        """Each tenant seen on ``lane``, with its figures."""
        result: dict[str, TenantTotals] = {}
        for seen_lane, tenant in self._tenant_children:
            if seen_lane == lane:
                labels = {"kind": self.kind, "lane": lane, "tenant": tenant}
                get = self.registry.get_sample_value
                result[tenant] = TenantTotals(
                    in_flight=int(get("fleet_tenant_jobs_in_flight", labels) or 0),
                    served=get("fleet_tenant_cost_served_total", labels) or 0.0,
                    parked=int(get("fleet_tenant_jobs_parked_total", labels) or 0),
                    waited=int(get("fleet_tenant_jobs_waited_total", labels) or 0),
                )
        return result

    def outcome(self, outcome: Outcome) -> None:
        # A label lookup takes a lock and builds a key: done once per outcome, not per job.
        counter = self._outcomes.get(outcome)
        if counter is None:
            counter = self._outcomes[outcome] = self.jobs.labels(self.kind, outcome.value)
        counter.inc()

    def spent(self, provider: str, model: str, usage: Usage) -> None:
        """Count what a call cost (fleet_cost_usd_total), when its usage has a price."""
        self.spent_usd(provider, model, usage.cost_usd)

    def spent_usd(self, provider: str, model: str, cost_usd: float | None) -> None:
        if cost_usd:
            self.cost.labels(self.kind, provider, model).inc(cost_usd)
