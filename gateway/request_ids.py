"""Every request's id: the ``Idempotency-Key`` header when the client sends one (the same key
again runs the job once: the workers' ledger answers a repeat from the stored answer), else
a new one. Each response carries it as ``x-request-id`` (gateway/front_door.py stamps it)."""

from __future__ import annotations

import itertools
import uuid
from typing import Final

from starlette.types import Scope

from contracts.envelope import IDENTIFIER_RULE, is_identifier
from gateway.errors import OpenAIError, invalid_request

HEADER: Final = b"x-request-id"
_STATE: Final = "request_id"  # scope["state"]


def request_id(scope: Scope) -> str:
    """The id RequestIds gave this request."""
    found: str = scope["state"][_STATE]
    return found


class RequestIds:
    def __init__(self) -> None:
        # New ids: a random prefix of this gateway and a counter, unique like a uuid4 each
        # (the prefix is), without a urandom call per request: FleetClient's own ids.
        self._prefix = uuid.uuid4().hex
        self._ids = itertools.count()

    def give(self, scope: Scope, key: str | None) -> OpenAIError | None:
        """Give the request its id (``key``, its Idempotency-Key header, when valid); the
        400 to answer instead, before any handler runs, when that key is outside the
        fleet's id alphabet (the response still carries a new id)."""
        valid = key is not None and is_identifier(key)
        scope["state"][_STATE] = key if valid else f"{self._prefix}-{next(self._ids):x}"
        if key is None or valid:
            return None
        return invalid_request(f"the Idempotency-Key header must be {IDENTIFIER_RULE}", None)
