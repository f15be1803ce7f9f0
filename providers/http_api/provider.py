"""What every provider that calls an HTTP API shares: one client, a circuit breaker, key
redaction, a health check, and the "model not served here" error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, TypeVar

import httpx

from contracts.errors import ErrorCode
from providers.circuit import CircuitBreaker, CircuitState
from providers.errors import ProviderError
from providers.http_api.client import HttpClient, HttpConfig, auth_headers
from providers.http_api.errors import Redactor

C = TypeVar("C", bound=HttpConfig)


class HttpApiProvider(Generic[C]):
    #: The operation in error messages and spans: "<name>.<operation>".
    operation: ClassVar[str]
    #: Path of an authenticated GET that answers when the API is up.
    health_path: ClassVar[str] = "/models"

    def __init__(
        self,
        config: C,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = config.name
        self._http = HttpClient(timeout_s=config.timeout_s, client=client, transport=transport)
        self._breaker = CircuitBreaker(config.name, config.circuit, clock=clock)
        self._redact = Redactor([config.api_key])
        self._sleep = sleep
        self._base = config.base_url.rstrip("/")
        self._op = f"{config.name}.{self.operation}"
        self._config = config

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, base_url={self._base!r}, "
            f"models={self._config.models!r})"
        )

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    async def load(self) -> None:
        """Nothing to load: the connection pool fills on the first call."""

    async def health(self) -> bool:
        """The API answers an authenticated GET (and the circuit is not open)."""
        if self._breaker.state is CircuitState.OPEN:
            return False
        try:
            response = await self._http.client.get(
                f"{self._base}{self.health_path}", headers=self._headers()
            )
        except httpx.HTTPError:
            return False
        return response.is_success

    async def aclose(self) -> None:
        await self._http.aclose()

    def _headers(self) -> dict[str, str]:
        return {**self._config.headers, **auth_headers(self._config.api_key)}

    def _check_model(self, model: str) -> None:
        models = self._config.models
        if model not in models:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                self._op,
                f"model {model!r} is not served here; available: {', '.join(models)}",
            )
