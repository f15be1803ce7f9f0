"""The one wait for a service a worker needs at start-up (Kafka, a provider's Redis): a step
that fails because the service cannot be reached is tried again, with backoff, until it
succeeds or the worker is told to stop; any other failure ends the start at once. A worker
that a supervisor starts during a broker or Redis restart waits (saying so once per
outage) instead of exiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from providers.call_retry import CallRetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a worker tries a service that is not there: 0.5 s, doubling up to 10 s.
SERVICE_WAIT = CallRetryPolicy(base_delay_s=0.5, max_delay_s=10.0, jitter="none")


class StoppedWaiting(Exception):
    """The worker was told to stop while it waited for a service."""


async def until_reachable(
    attempt: Callable[[], Awaitable[T]],
    *,
    unreachable: Callable[[Exception], bool],
    who: str,
    service: str,
    what: str,
    stopped: asyncio.Event | None = None,
    policy: CallRetryPolicy = SERVICE_WAIT,
) -> T:
    """``attempt()``'s result once it succeeds. A failure ``unreachable`` says is the
    service's absence is tried again; any other is raised. ``StoppedWaiting`` when
    ``stopped`` is set first. The log says ``who`` waits for which ``service`` to do
    ``what`` ("generate worker", "Kafka at 127.0.0.1:9092", "the consumer's start")."""
    tries = 0
    while stopped is None or not stopped.is_set():
        try:
            result = await attempt()
        except Exception as exc:
            if not unreachable(exc):
                raise
            if not tries:
                log.warning(
                    "%s: %s is not reachable (%s: %s); waiting for it", who, service, what, exc
                )
            delay = policy.backoff_s(min(tries, 5))
            tries += 1
            if stopped is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), timeout=delay)
            continue
        if tries:
            log.info("%s: %s is reachable after %d tries (%s)", who, service, tries + 1, what)
        return result
    raise StoppedWaiting
