"""The link that holds a tenant's budget around its job (workers/budgets.py)."""

from __future__ import annotations

import logging

from providers.call_retry import CallRetryPolicy, call_with_retry
from providers.catalogue import ModelCatalogue
from providers.errors import ProviderError
from workers.budgets import Budget, Budgets, Hold
from workers.failure_table import BUDGET_EXHAUSTED
from workers.idempotency import LedgerUnavailable, job_ref
from workers.job_costs import cost_usd, worst_case_usd
from workers.runtime.links.chain import Job, Link
from workers.runtime.links.ledger import LEDGER_RETRY
from workers.runtime.links.outcomes import Outcomes

log = logging.getLogger(__name__)


class HoldBudget(Link):
    """A job of a tenant with a budget reserves its worst case before it runs, and is
    answered ``budget_exhausted`` without running when that does not fit what is left; when
    it ends, the hold is settled to what it cost (an answer) or let go (an error, a cancel,
    a retry, a shutdown). Inside Claim and Deadline: a replayed or expired job reserves
    nothing. A job of a tenant without a budget passes through without a Redis call."""

    def __init__(
        self,
        outcomes: Outcomes,
        budgets: Budgets,
        models: ModelCatalogue,
        retry: CallRetryPolicy = LEDGER_RETRY,
    ) -> None:
        self._outcomes = outcomes
        self._budgets = budgets
        self._models = models
        self._retry = retry

    async def __call__(self, job: Job) -> None:
        request = job.request
        budget = self._budgets.of(request.tenant)
        worst = worst_case_usd(request, self._models) if budget is not None else 0.0
        if budget is None or worst == 0:  # nothing the catalogue prices: nothing to hold
            await self.call_next(job)
            return
        ref = job_ref(self._outcomes.kind, request.tenant, request.request_id)
        member = f"{ref}@{job.stamper.attempt}"  # this run's, not a later attempt's
        try:
            hold = await call_with_retry(
                lambda: self._budgets.reserve(request.tenant, budget, member, worst),
                self._retry,
                name="budget.reserve",
            )
        except LedgerUnavailable as exc:
            message = f"the fleet's budget store is unavailable ({exc.detail}); try again"
            await self._outcomes.settle(job, exc, exc.detail, message)
            await job.stream.flush()
            return
        if hold is None:
            await self._refuse(job, budget, worst)
            return
        try:
            await self.call_next(job)
        finally:
            await self._end(job, hold)

    async def _refuse(self, job: Job, budget: Budget, worst: float) -> None:
        message = (
            f"tenant {job.request.tenant!r} has not ${worst:.6f} left of its budget of "
            f"${budget.usd:g} per {budget.period} (UTC) for this request at its worst case; "
            "it was not run"
        )
        log.info("job %s: %s", job.request.request_id, message)
        await self._outcomes.error_reply(job, BUDGET_EXHAUSTED.code, message)
        await job.stream.flush()

    async def _end(self, job: Job, hold: Hold) -> None:
        cost = cost_usd(job.final) if job.final is not None else None
        try:
            if cost is None:
                await self._budgets.release(hold)
            else:
                await self._budgets.settle(hold, cost)
        except ProviderError as exc:  # the hold lapses by itself; the spend is lost
            log.error("job %s: its budget hold was not settled: %s", job.request.request_id, exc)
