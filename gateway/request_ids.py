"""Every request's id: the ``Idempotency-Key`` header when the client sends one (the same key
again runs the job once: the workers' ledger answers a repeat from the stored answer), else
a new one. Each response carries it as ``x-request-id``."""

from __future__ import annotations

import itertools
import uuid
from typing import Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.envelope import IDENTIFIER_RULE, is_identifier
from gateway.errors import invalid_request, send_error
from gateway.response_headers import adding_header

_HEADER: Final = b"x-request-id"


def request_id(scope: Scope) -> str:
    """The id RequestIds gave this request."""
    found: str = scope["state"]["request_id"]
    return found


class RequestIds:
    """ASGI middleware: refuses a key outside the fleet's id alphabet (400) before any
    handler runs, and stamps the id on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        # New ids: a random prefix of this middleware and a counter, unique like a uuid4
        # each (the prefix is), without a urandom call per request: FleetClient's own ids.
        self._prefix = uuid.uuid4().hex
        self._ids = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        key = Headers(scope=scope).get("idempotency-key")
        stamped = (
            key if key is not None and is_identifier(key) else f"{self._prefix}-{next(self._ids):x}"
        )
        scope.setdefault("state", {})["request_id"] = stamped

        stamp = adding_header(send, _HEADER, stamped.encode)
        if key is not None and key != stamped:
            error = invalid_request(f"the Idempotency-Key header must be {IDENTIFIER_RULE}", None)
            await send_error(stamp, error)
            return
        await self._app(scope, receive, stamp)
