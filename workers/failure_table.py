"""What each failure comes to, in one table: the error code the caller is answered with, the
dead-letter reason (None: no dead letter), and whether the job is redelivered through the
retry tiers while its budget lasts (then it is dead-lettered with that reason).

In the shape of FastStream's ExceptionMiddleware: a table keyed by exception type, looked up
along the exception's MRO, so the most specific type it names wins. Every link, the retry
forwarder and the control listener ask it; none picks a code or a reason of its own. Beside
it, the outcomes that no exception carries (a job refused before it runs, or given up on).

It sits with the root modules of ``workers/``, below ``runtime/`` and ``handlers/``, so that
all of them can ask it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from contracts.errors import ConfigError, ContractError, ErrorCode
from contracts.names import DeadLetterReason
from providers.errors import ProviderError
from workers.idempotency import LedgerUnavailable


class ReplyTooLarge(Exception):
    """A result larger than the configured bound on a whole reply (``replies.max_bytes``).

    Raised by the reply stream (``workers/handlers/reply_stream.py``); defined here, below the
    handlers, so that the table can name it."""


class RetryTooLarge(Exception):
    """A job whose retry copy the broker would not take: the request fits its topic, but not
    with the headers a retry adds (a request near the broker's limit).

    Raised by the retry scheduler (``workers/retry.py``)."""


class Failure(NamedTuple):
    """What one failure comes to."""

    code: ErrorCode  # what the caller is answered with (and the dead letter's error code)
    reason: DeadLetterReason | None  # why it is dead-lettered; None: it is not
    # Whether a later try may succeed: the job is sent to a retry tier while its retry
    # budget lasts, and only then ends here.
    redeliver: bool


def _contract(exc: ContractError) -> Failure:
    # Each way of breaking the wire contract is a dead-letter reason of its own.
    return Failure(ErrorCode.INVALID_INPUT, DeadLetterReason.of(exc.reason), redeliver=False)


def _provider(exc: ProviderError) -> Failure:
    # The provider's own code; a retryable one is tried again, and dead-lettered once the
    # budget is spent; any other is only answered (the caller's to fix, not the fleet's).
    if exc.retryable:
        return Failure(exc.code, DeadLetterReason.RETRIES_EXHAUSTED, redeliver=True)
    return Failure(exc.code, None, redeliver=False)


_TOO_LARGE: Final = Failure(
    ErrorCode.INVALID_INPUT, DeadLetterReason.REPLY_TOO_LARGE, redeliver=False
)

# exception type -> its failure, or how to read it off the exception (an entry that is a
# function takes an exception of its key's type)
FAILURES: Final[Mapping[type[Exception], Failure | Callable[[Any], Failure]]] = {
    # A message that breaks the wire contract (a request, a parked retry, a control message).
    ContractError: _contract,
    # A provider call that failed.
    ProviderError: _provider,
    # Redis, which once-only execution needs, stayed away for the claim's whole retry budget:
    # the job ends rather than waiting uncommitted for a Redis that may not come back.
    LedgerUnavailable: Failure(
        ErrorCode.PROVIDER_DOWN, DeadLetterReason.LEDGER_UNAVAILABLE, redeliver=False
    ),
    # A request the configuration does not allow (an option its provider cannot honour).
    ConfigError: Failure(ErrorCode.INVALID_INPUT, None, redeliver=False),
    # A result over the broker's message size, or over the fleet's bound on a whole reply:
    # the caller is there and gets a small typed error; a retry would make the same result.
    MessageSizeTooLargeError: _TOO_LARGE,
    ReplyTooLarge: _TOO_LARGE,
    # A request that cannot be parked for a retry: no later try would fit either, so the
    # caller is answered now, and told the size.
    RetryTooLarge: Failure(ErrorCode.INVALID_INPUT, DeadLetterReason.OVERSIZED, redeliver=False),
    # A reply the broker would not take: a broker restarting, a leader moving, and a later
    # try gets through; unless the caller went away (``ReplyAddresses.gone``).
    KafkaError: Failure(
        ErrorCode.PROVIDER_DOWN, DeadLetterReason.REPLY_UNDELIVERABLE, redeliver=True
    ),
    # Anything else is a bug in a handler.
    Exception: Failure(ErrorCode.INTERNAL, DeadLetterReason.HANDLER_FAILED, redeliver=False),
}


def failure_of(exc: Exception) -> Failure:
    """What ``exc`` comes to: the entry of the most specific type the table names."""
    entry = next(FAILURES[kind] for kind in type(exc).__mro__ if kind in FAILURES)
    return entry if isinstance(entry, Failure) else entry(exc)


# The outcomes no exception carries.
# A reply address the fleet does not send to (another family, a partition the topic lacks).
BAD_REPLY_ADDRESS: Final = Failure(
    ErrorCode.INVALID_INPUT, DeadLetterReason.BAD_REPLY_ADDRESS, redeliver=False
)
# The caller went away before its job ran: its reply topic does not exist.
REPLY_TOPIC_GONE: Final = Failure(
    ErrorCode.INVALID_INPUT, DeadLetterReason.REPLY_TOPIC_GONE, redeliver=False
)
# A request not signed by its tenant's key.
TENANT_UNVERIFIED: Final = Failure(
    ErrorCode.AUTH, DeadLetterReason.TENANT_UNVERIFIED, redeliver=False
)
# A poison job: its workers died running it, again and again.
WORKER_CRASHED: Final = Failure(
    ErrorCode.INTERNAL, DeadLetterReason.WORKER_CRASHED, redeliver=False
)
# A job its tenant's budget has no room left for: answered, not run, not retried; the
# caller's to decide (a later period, a higher limit), not a fleet fault to dead-letter.
BUDGET_EXHAUSTED: Final = Failure(ErrorCode.BUDGET_EXHAUSTED, None, redeliver=False)
# A job found past its deadline: answered, not run, kept nowhere.
DEADLINE_PASSED: Final = Failure(ErrorCode.TIMEOUT, None, redeliver=False)
