"""What an HTTP provider is configured with and calls through: the shared config fields,
per-request credentials, and its httpx client."""

from __future__ import annotations

from typing import Annotated

import httpx
import msgspec

from contracts.secrets import Secret
from providers.call_retry import CallRetryPolicy
from providers.circuit import CircuitSettings


class HttpConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every HTTP provider's config has; each provider adds its own fields."""

    # The registry name by default; set it to run several instances (e.g. "vllm") side by side.
    name: str
    base_url: str
    api_key: Secret | None = None
    # The models this instance serves: routing picks a provider by these names.
    models: Annotated[list[str], msgspec.Meta(min_length=1)]
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    retry: CallRetryPolicy = CallRetryPolicy()
    circuit: CircuitSettings = CircuitSettings()
    # Extra, non-secret headers (e.g. OpenAI-Organization); credentials belong in api_key,
    # which is the only field masked in reprs and scrubbed from error messages.
    headers: dict[str, str] = {}


def auth_headers(
    api_key: Secret | None, *, header: str = "authorization", bearer: bool = True
) -> dict[str, str]:
    """Per-request credentials; kept off the client so no client repr or default-header
    dump can show them."""
    if not api_key:
        return {}
    value = api_key.reveal()
    return {header: f"Bearer {value}" if bearer else value}


class HttpClient:
    """The AsyncClient a provider uses: the one it was given (never closed here) or one it
    builds, optionally over a given transport (tests pass ``httpx.MockTransport``)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if client is not None and transport is not None:
            raise ValueError("pass either an httpx.AsyncClient or a transport, not both")
        self._owned = client is None
        self.client = client or httpx.AsyncClient(
            transport=transport,
            # timeout_s bounds connecting and each read, so a stream that stalls fails
            # with a timeout instead of hanging; a long stream that keeps talking is fine.
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        )

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()
