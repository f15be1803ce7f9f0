"""The gateway's own time on a request, stamped on its response as
``x-fleet-gateway-overhead-ms``: from the request's head arriving to the response's head
going out, less the time spent awaiting the fleet (the job's answer, or a stream's first
event). It counts reading the body, keys, admission, decoding, sending the job and
encoding the answer; a streamed answer's later chunks go out after the header and are not
in it."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

from starlette.requests import Request

from gateway.disconnect import unless_disconnected

T = TypeVar("T")

HEADER: Final = b"x-fleet-gateway-overhead-ms"
_WAITED: Final = "fleet_wait_s"
MEASURED: Final = "overhead_s"  # scope["state"]: the overhead in seconds, for the metrics


async def awaiting_fleet(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """``work``'s result (unless the client leaves first: ClientGone), its time kept off
    the request's overhead."""
    started = time.perf_counter()
    try:
        return await unless_disconnected(request.receive, work)
    finally:
        state = request.scope["state"]
        state[_WAITED] = state.get(_WAITED, 0.0) + time.perf_counter() - started


def overhead_ms(state: dict[str, Any], started: float) -> bytes:
    """The header's value: the time since ``started`` (``time.perf_counter()`` when the
    request's head arrived) less the fleet's, kept in ``state`` for the metrics too."""
    spent = state[MEASURED] = time.perf_counter() - started - state.get(_WAITED, 0.0)
    return f"{spent * 1000:.2f}".encode()
