"""Runs one Kafka record as a job, down a chain of links (workers/runtime/links/) that
ends in the kind's handler. Every failure has a place: bad input goes to the dead-letter
topic with the reason (and an error reply when the reply address can be read), retryable
provider failures to a delayed retry topic, other failures become error replies. Nothing
here raises except cancellation and a broker that cannot take the dead letter, so one bad
job never stops the worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from contracts.control import CancelJob
from contracts.names import Lane
from providers.call_retry import CallRetryPolicy
from providers.catalogue import NO_MODELS, ModelCatalogue
from transport.publisher import Publisher, TopicProbe
from transport.records import Record
from workers.budgets import Budgets
from workers.dead_letter import DeadLetters
from workers.handlers import JobHandler
from workers.handlers.reply_stream import GoneTopics
from workers.idempotency import JobLedger
from workers.metrics import WorkerMetrics
from workers.retry import RedeliveryScheduler
from workers.runtime.lanes import LaneGate
from workers.runtime.links import (
    LEDGER_RETRY,
    Cancellation,
    CatchUndeliverable,
    CheckReplyAddress,
    Claim,
    Deadline,
    Decode,
    HoldBudget,
    Metered,
    Outcomes,
    ReplyAddresses,
    RouteFailures,
    RunHandler,
    Traced,
    VerifyTenant,
)
from workers.runtime.links.chain import Job, Link, chain
from workers.runtime.links.concurrency import TakeTurn
from workers.settings import DEFAULT_REPLY_LIMITS, ReplyLimits, TenantSettings
from workers.tenant_leases import TenantLeases


def _anywhere(topic: str) -> bool:
    return True


class TurnSettings(NamedTuple):
    """What the runner keeps tenants within their ``max_in_flight`` with: the leases, each
    tenant's limits, and the lane gate a waiting job lends its slot back to."""

    leases: TenantLeases
    tenants: dict[str, TenantSettings]
    gate: LaneGate | None = None


class JobRunner:
    def __init__(
        self,
        *,
        kind: str,
        handler: JobHandler[Any],
        producer: Publisher,
        dead_letters: DeadLetters,
        max_payload_bytes: int,
        metrics: WorkerMetrics,
        ledger: JobLedger | None = None,
        retries: RedeliveryScheduler | None = None,
        ledger_retry: CallRetryPolicy = LEDGER_RETRY,
        topic_probe: TopicProbe | None = None,
        tenant_keys: dict[str, bytes] | None = None,
        reply_limits: ReplyLimits = DEFAULT_REPLY_LIMITS,
        reply_topic_allowed: Callable[[str], bool] | None = None,
        turns: TurnSettings | None = None,
        budgets: Budgets | None = None,
        models: ModelCatalogue = NO_MODELS,
    ) -> None:
        outcomes = Outcomes(kind, dead_letters, metrics, retries)
        addresses = ReplyAddresses(reply_topic_allowed or _anywhere, topic_probe, GoneTopics())
        self._ledger = ledger
        self._cancellation = Cancellation(kind, metrics, ledger)
        links: list[Link] = [
            Traced(),
            CatchUndeliverable(outcomes, addresses),
            Decode(outcomes, producer, max_payload_bytes, reply_limits, addresses),
            CheckReplyAddress(outcomes, addresses),
            *([VerifyTenant(outcomes, tenant_keys)] if tenant_keys is not None else []),
            # Claim before Deadline: a job answered before is replayed whatever its deadline
            # (never a timeout after its answer), and a delivery of a job that runs elsewhere
            # waits for that answer (docs/decisions/0028-final-stored-before-sent.md).
            *([Claim(outcomes, ledger, ledger_retry)] if ledger is not None else []),
            Deadline(metrics),
            # After Claim (a replay reserves nothing) and Deadline, before any provider call.
            *([HoldBudget(outcomes, budgets, models, ledger_retry)] if budgets is not None else []),
            self._cancellation,
            *self._turns(outcomes, turns, ledger_retry),
            Metered(metrics, kind),
            RouteFailures(outcomes),
        ]
        self._run = chain(links, RunHandler(handler, metrics, kind))

    @staticmethod
    def _turns(
        outcomes: Outcomes, turns: TurnSettings | None, retry: CallRetryPolicy
    ) -> list[Link]:
        """TakeTurn, where a tenant has a concurrency limit: others pay nothing for it."""
        if turns is None:
            return []
        link = TakeTurn(outcomes, turns.leases, turns.tenants, retry, turns.gate)
        return [link] if link.limits_any else []

    async def run(self, record: Record, lane: Lane = "interactive") -> None:
        """Run one record as a job of ``lane`` (the lane whose consumer fetched it)."""
        await self._run(Job(record, lane))

    @property
    def first_to_claim(self) -> Callable[[str], Awaitable[bool]] | None:
        """The ledger's once-across-replicas claim (None without the ledger)."""
        return self._ledger.first_to_claim if self._ledger is not None else None

    async def cancel(self, message: CancelJob) -> None:
        """The caller gave up: stop the job if it runs here, else make sure it never starts."""
        await self._cancellation.cancel(message)
