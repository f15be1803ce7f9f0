"""The links of the job runner's chain, outermost first; each does one thing.

Traced, CatchUndeliverable, Decode, CheckReplyAddress, VerifyTenant (with tenant keys),
Claim (with the ledger), Deadline, HoldBudget (with budgets), Cancellation, TakeTurn (with a
tenant limited), Metered,
RouteFailures, and RunHandler at the end (workers/runtime/runner.py puts them together).
Every failure has a place: a dead letter with its reason, an error reply, a retry, or (for
cancellation and shutdown) a job handed back unfinished.
"""

from workers.runtime.links.admission import (
    CheckReplyAddress,
    Deadline,
    Decode,
    ReplyAddresses,
    VerifyTenant,
)
from workers.runtime.links.budget import HoldBudget
from workers.runtime.links.failures import CatchUndeliverable, RouteFailures
from workers.runtime.links.handler import RunHandler
from workers.runtime.links.ledger import LEDGER_RETRY, Cancellation, Claim
from workers.runtime.links.observe import Metered, Traced
from workers.runtime.links.outcomes import Outcomes

__all__ = [
    "LEDGER_RETRY",
    "Cancellation",
    "CatchUndeliverable",
    "CheckReplyAddress",
    "Claim",
    "Deadline",
    "Decode",
    "HoldBudget",
    "Metered",
    "Outcomes",
    "ReplyAddresses",
    "RouteFailures",
    "RunHandler",
    "Traced",
    "VerifyTenant",
]
