"""A small HTTP endpoint per worker process: /healthz, /readyz and Prometheus /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from workers.health_port import HealthPortUnavailable, HealthSocket
from workers.metrics import WorkerMetrics

_MAX_REQUEST_BYTES = 8192
# Provider health checks may call a remote API: one answer serves the probes for this long.
PROVIDER_HEALTH_TTL_S = 10.0

ProviderHealth = Callable[[], Awaitable[dict[str, bool]]]


class HealthServer:
    def __init__(
        self,
        metrics: WorkerMetrics,
        is_ready: Callable[[], bool],
        before_scrape: Callable[[], Awaitable[None]] | None = None,
        provider_health: ProviderHealth | None = None,
        wedged: Callable[[], str | None] | None = None,
    ) -> None:
        self._metrics = metrics
        self._is_ready = is_ready
        self._wedged = wedged
        self._before_scrape = before_scrape
        self._provider_health = provider_health
        self._health: tuple[float, dict[str, bool]] | None = None
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the health server is not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, port: int | HealthSocket, host: str = "0.0.0.0") -> None:
        """Serve on ``port`` (0: one the OS picks), or on a socket bound earlier; then write
        the bound port to the socket's port file, if it has one."""
        bound = port if isinstance(port, HealthSocket) else HealthSocket(port, host)
        try:
            self._server = await asyncio.start_server(self._serve, sock=bound.sock)
        except OSError as exc:
            # listen() refused: another socket with SO_REUSEADDR bound the port meanwhile
            # (Linux lets two such sockets bind one port while neither listens).
            bound.close()
            raise HealthPortUnavailable(bound.port, exc) from exc
        bound.announce()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            path = head[:_MAX_REQUEST_BYTES].split(b" ", 2)[1].decode(errors="replace")
            status, content_type, body = await self._route(path)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError, TimeoutError):
            status, content_type, body = "400 Bad Request", "text/plain", b"bad request\n"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    async def _route(self, path: str) -> tuple[str, str, bytes]:
        if path == "/healthz":
            # Alive unless the worker knows it is stuck: an orchestrator restarts it then.
            why = self._wedged() if self._wedged is not None else None
            if why is not None:
                return "503 Service Unavailable", "text/plain", f"wedged: {why}\n".encode()
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            return await self._readiness()
        if path == "/metrics":
            if self._before_scrape is not None:
                await self._before_scrape()
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._metrics.registry)
        return "404 Not Found", "text/plain", b"not found\n"

    async def _readiness(self) -> tuple[str, str, bytes]:
        """Ready: the consumer has its partitions and at least one provider is healthy. The
        body names the providers that are down."""
        if not self._is_ready():
            return "503 Service Unavailable", "text/plain", b"not ready: not in the group yet\n"
        health = await self._cached_provider_health()
        down = sorted(name for name, ok in health.items() if not ok)
        lines = "".join(f"provider {name}: down\n" for name in down)
        if health and len(down) == len(health):
            return "503 Service Unavailable", "text/plain", f"not ready\n{lines}".encode()
        return "200 OK", "text/plain", f"ready\n{lines}".encode()

    async def _cached_provider_health(self) -> dict[str, bool]:
        if self._provider_health is None:
            return {}
        now = time.monotonic()
        if self._health is None or now - self._health[0] > PROVIDER_HEALTH_TTL_S:
            self._health = (now, await self._provider_health())
        return self._health[1]
