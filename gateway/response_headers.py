"""An ASGI ``send`` that adds one header to the response's start: how the gateway's
middlewares stamp what every answer carries."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Message, Send


def adding_header(send: Send, name: bytes, value: Callable[[], bytes]) -> Send:
    """``send``, with ``name: value()`` added to ``http.response.start`` (``value`` is asked
    then, so it may measure up to that moment)."""

    async def stamped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (name, value())]
            message = {**message, "headers": headers}
        await send(message)

    return stamped
