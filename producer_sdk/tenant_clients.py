"""Fleet clients, one per tenant, for a service that sends requests on behalf of several
tenants (the batch coordinator, the HTTP gateway): each request is signed with its tenant's
key where the service has one, so workers that verify tenants run it, and memory, stored
answers and collections are that tenant's. Batch clients too (the gateway's ``/v1/batches``):
their commands signed the same way, their reads that tenant's batches only."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from contracts.secrets import Secret
from producer_sdk.batches import BatchClient
from producer_sdk.client import FleetClient
from transport.connection import KafkaConnection


class TenantClients:
    def __init__(
        self,
        connection: KafkaConnection,
        namespace: str,
        keys: dict[str, Secret],
        *,
        client_name: str,
    ) -> None:
        self._connection = connection
        self._namespace = namespace
        self._keys = keys
        self._client_name = client_name  # the start of each client's id: who it serves
        self._clients: dict[str, FleetClient] = {}
        self._batches: dict[str, BatchClient] = {}
        self._stack = contextlib.AsyncExitStack()
        self._opening = asyncio.Lock()  # two batches of a new tenant open one client

    async def of(self, tenant: str) -> FleetClient:
        """``tenant``'s client, opened (its reply topic made) on first use."""
        if (client := self._clients.get(tenant)) is not None:
            return client
        async with self._opening:
            if (client := self._clients.get(tenant)) is None:
                key = self._keys.get(tenant)
                client = FleetClient(
                    self._connection.bootstrap_servers,
                    security=self._connection.security,
                    namespace=self._namespace,
                    tenant=tenant,
                    tenant_key=key.reveal() if key is not None else None,
                    client_id=f"{self._client_name}-{uuid.uuid4().hex[:12]}",
                )
                await self._stack.enter_async_context(client)
                self._clients[tenant] = client
            return client

    async def batches(self, tenant: str) -> BatchClient:
        """``tenant``'s batch client, opened on first use."""
        if (batches := self._batches.get(tenant)) is not None:
            return batches
        async with self._opening:
            if (batches := self._batches.get(tenant)) is None:
                key = self._keys.get(tenant)
                batches = BatchClient(
                    self._connection,
                    namespace=self._namespace,
                    tenant=tenant,
                    tenant_key=key.reveal() if key is not None else None,
                )
                await self._stack.enter_async_context(batches)
                self._batches[tenant] = batches
            return batches

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._clients.clear()
        self._batches.clear()
