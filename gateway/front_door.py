"""The one ASGI middleware around every request: its id (gateway/request_ids.py), its body's
limits (gateway/body_limits.py), its metrics and span (gateway/observe.py), and the headers
every answer carries, ``x-request-id`` and the gateway's own time
(gateway/overhead.py). One layer, not one per job: a layer costs a coroutine call on the
way in and a ``send`` wrapper on each message out, and the four were a tenth of the
gateway's CPU a call (bench/NOTES.md, 2026-12-07).

It is the outermost layer (the app has no ServerErrorMiddleware, gateway/app.py): a failure
no handler took is answered here, as OpenAI's 500, when the response has not begun, and
raised on for the server to log."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.gateway_limits import GatewayLimits
from gateway.body_limits import BodyLimits
from gateway.errors import OpenAIError, send_error
from gateway.metrics import GatewayMetrics
from gateway.observe import Observed, describe
from gateway.overhead import HEADER as OVERHEAD_HEADER
from gateway.overhead import overhead_ms
from gateway.request_ids import HEADER as REQUEST_ID_HEADER
from gateway.request_ids import RequestIds, request_id


class FrontDoor:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, limits: GatewayLimits) -> None:
        self._app = app
        self._observed = Observed(metrics)
        self._ids = RequestIds()
        self._limits = BodyLimits(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()  # the overhead's clock starts before anything else
        state = scope.setdefault("state", {})
        key = length = None
        for name, value in scope["headers"]:  # lower case, as ASGI gives them; the first
            if name == b"idempotency-key" and key is None:
                key = value.decode("latin-1")
            elif name == b"content-length" and length is None:
                length = value.decode("latin-1")
        status = 500  # what the client gets when the app fails before it answers
        begun = False

        async def stamped(message: Message) -> None:
            nonlocal status, begun
            if message["type"] == "http.response.start":
                status, begun = message["status"], True
                headers = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id(scope).encode()),
                    (OVERHEAD_HEADER, overhead_ms(state, started)),
                ]
                message = {**message, "headers": headers}
            await send(message)

        observed = self._observed
        observed.begin()
        try:
            with observed.span(scope) as span:
                refusal = self._ids.give(scope, key) or self._limits.declared_too_large(length)
                if refusal is not None:
                    await send_error(stamped, refusal)
                else:
                    try:
                        await self._app(scope, self._limits.limited(receive), stamped)
                    except Exception as exc:
                        if not begun:
                            await send_error(stamped, _failed(exc))
                        raise
                if span is not None:
                    describe(span, scope, status)
        finally:
            observed.end(scope, status, time.perf_counter() - started)


def _failed(exc: Exception) -> OpenAIError:
    return OpenAIError(
        500,
        f"the gateway failed on this request ({type(exc).__name__}); it is logged",
        code="internal_error",
    )
