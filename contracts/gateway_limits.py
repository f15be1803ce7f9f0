"""The HTTP gateway's limits: the ``[gateway.limits]`` settings table. Here, not in
``workers/settings.py``, because both sides read it: the settings file (workers/) and the
gateway that enforces it (gateway/), which may not import each other."""

from __future__ import annotations

from typing import Annotated

import msgspec


class GatewayLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Caps on what one gateway process holds at once (replicas multiply them): requests
    # taken and not yet answered, and their estimated tokens (the prompt's estimate plus
    # max_tokens, contracts/tokens.py). Past a cap the answer is 429 with Retry-After.
    max_requests_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 1024
    max_tokens_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 4_000_000
    tenant_max_requests_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 256
    tenant_max_tokens_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    # What a request without max_tokens counts for its answer.
    assumed_completion_tokens: Annotated[int, msgspec.Meta(ge=0)] = 1024
    # The Retry-After of a 429 (caps) and of a 503 (Kafka unreachable), in whole seconds.
    retry_after_s: Annotated[int, msgspec.Meta(ge=1)] = 1
    # A body longer than this is refused with 413 before it is read whole.
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1)] = 32 * 1024 * 1024
    # A body not complete this long after its request's head arrived is refused with 408.
    body_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # A request's head (its line and headers) not complete this long after the connection
    # opened, or after the head's first byte on a kept-alive one: 408, and the connection
    # is closed.
    header_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
