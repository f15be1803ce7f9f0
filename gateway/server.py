"""``fleet gateway``'s server: the ASGI app on uvicorn, bound to a socket made here so that
port 0 works (the bound port is known before serving starts), with one FleetClient per
tenant open for the server's life."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Iterator, Mapping

import uvicorn

from contracts.gateway_limits import GatewayLimits
from contracts.secrets import Secret
from gateway.app import GatewayState, gateway_app
from gateway.head_timeout import head_timed
from gateway.key_rates import KeyRates, SharedRate
from gateway.keys import KeyRing
from gateway.models import ModelTable
from producer_sdk import TenantClients
from transport.connection import KafkaConnection


class Gateway:
    def __init__(
        self,
        connection: KafkaConnection,
        *,
        namespace: str,
        api_keys: Mapping[str, Secret],
        tenant_keys: dict[str, Secret],
        models: Mapping[str, str],
        limits: GatewayLimits | None = None,
        rate_limits: Mapping[str, SharedRate] | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
    ) -> None:
        """``api_keys``: each tenant's bearer key; ``tenant_keys``: each tenant's signing key
        (the workers' ``tenant_keys``); ``models``: each served model's job kind; ``limits``:
        the ``[gateway.limits]`` table (its defaults when None); ``rate_limits``: the
        requests and tokens per minute of each tenant that has a limit, shared with the
        other replicas (``[gateway.rate_limits]``, built by ``fleet gateway``)."""
        self._tenants = sorted(api_keys)
        clients = TenantClients(connection, namespace, tenant_keys, client_name="gateway")
        self.state = GatewayState(
            clients,
            KeyRing(api_keys),
            ModelTable(models),
            limits or GatewayLimits(),
            KeyRates(rate_limits or {}),
        )
        self._socket = socket.create_server((host, port))
        # create_server's socket says protocol 0, not TCP, and asyncio sets TCP_NODELAY only
        # on connections it sees as TCP: with Nagle on, a response's head and body, written
        # apart, wait for the client's delayed ACK (40 ms a request; bench/gateway_overhead.py
        # measured it). Accepted connections inherit the option.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            gateway_app(self.state),
            http=head_timed(self.state.limits.header_timeout_s),
            lifespan="off",
            # Nothing here reads the client's address, and uvicorn's proxy-headers middleware
            # (X-Forwarded-For from 127.0.0.1) is one more layer on every request.
            proxy_headers=False,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)

    async def serve(self) -> None:
        """Serve until SIGINT or SIGTERM (or ``stop``), then close the tenants' clients."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        async with self.running() as serving:
            await serving

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        """Serving for the length of the block (the task ends when the server stops);
        ready once every tenant's client is open."""
        serving = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        try:
            for tenant in self._tenants:
                await self.state.clients.of(tenant)
            self.state.ready = True
            yield serving
        finally:
            self.stop()
            await serving
            await self.state.clients.aclose()
            self._socket.close()

    def stop(self) -> None:
        self._server.should_exit = True


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """None: uvicorn's own would end the process by the signal once it stops serving,
        before the gateway closes its clients (and deletes their reply topics)."""
        yield
