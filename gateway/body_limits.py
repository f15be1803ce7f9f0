"""Hostile bodies: one longer than ``max_body_bytes`` is refused with 413 before it is read
whole (at once when its Content-Length says so, else as soon as the bytes read pass the
limit), and one not complete ``body_timeout_s`` after the request's head arrived (a client
dripping it) with 408. Either is refused while the handler reads the body, before a job
exists, so nothing reaches Kafka."""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.gateway_limits import GatewayLimits
from gateway.errors import OpenAIError, send_error


class BodyLimits:
    def __init__(self, app: ASGIApp, limits: GatewayLimits) -> None:
        self._app = app
        self._max = limits.max_body_bytes
        self._timeout_s = limits.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max:
            await send_error(send, self._too_large())
            return
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        read = 0
        complete = False

        async def limited() -> Message:
            nonlocal read, complete
            if complete:  # the body is in: what comes next is the disconnect, untimed
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise OpenAIError(
                    408,
                    f"the request body was not complete within {self._timeout_s:g} s",
                    code="request_timeout",
                ) from None
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self._max:
                    raise self._too_large()
                complete = not message.get("more_body", False)
            return message

        await self._app(scope, limited, send)

    def _too_large(self) -> OpenAIError:
        return OpenAIError(
            413,
            f"the request body is larger than this gateway's limit of {self._max} bytes",
            code="request_too_large",
        )
