"""Hostile bodies: one longer than ``max_body_bytes`` is refused with 413 before it is read
whole (at once when its Content-Length says so, else as soon as the bytes read pass the
limit), and one not complete ``body_timeout_s`` after the request's head arrived (a client
dripping it) with 408. Either is refused while the handler reads the body, before a job
exists, so nothing reaches Kafka."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive

from contracts.gateway_limits import GatewayLimits
from gateway.errors import OpenAIError


class BodyLimits:
    def __init__(self, limits: GatewayLimits) -> None:
        self._max = limits.max_body_bytes
        self._timeout_s = limits.body_timeout_s

    def declared_too_large(self, content_length: str | None) -> OpenAIError | None:
        """The 413 to answer at once when the request's Content-Length passes the limit."""
        if content_length is None or not content_length.isdigit():
            return None
        return self._too_large() if int(content_length) > self._max else None

    def limited(self, receive: Receive) -> Receive:
        """``receive``, raising the 408 or 413 as the body comes (timed from now)."""
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

        return limited

    def _too_large(self) -> OpenAIError:
        return OpenAIError(
            413,
            f"the request body is larger than this gateway's limit of {self._max} bytes",
            code="request_too_large",
        )
