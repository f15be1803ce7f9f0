"""How many of one tenant's jobs (and one generate session's) run at once across every
replica: a lease per running job, kept in Redis.

Each limited key (a tenant, a tenant's session) is a sorted set of lease ids scored by when
they expire. Taking a lease sweeps the expired ones and adds this one in one script, so two
replicas never both take the last place. A worker renews its leases while their jobs run,
as the ledger renews its locks; a worker that dies stops renewing, and its leases fall out
of the set within the lease time (docs/decisions/0043-concurrency-per-tenant.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import Sequence
from typing import Any, Final

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from providers.redis_client import REDIS_FAILURES, RedisClient

# KEYS: the sets of the lease's keys (a tenant's, and a session's). ARGV: lease id, ttl ms,
# then each key's limit. Sweeps each set, then takes a place in every one or in none.
# Returns 1 when taken (or held already), 0 when a set is full. The time is Redis's own, so
# replicas with skewed clocks agree on what has expired.
_TAKE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if not redis.call('ZSCORE', KEYS[i], ARGV[1])
     and redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 + i]) then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 1
"""
# KEYS: as _TAKE. ARGV: lease id, ttl ms. Pushes the lease's expiry on, only where it is
# still held (XX): a lease swept away (this worker was stalled past its ttl) is not brought
# back over a job that took its place.
_RENEW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  if redis.call('ZADD', KEYS[i], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 1
"""
# KEYS: as _TAKE. ARGV: lease id.
_RELEASE: Final = """
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
return 1
"""


def tenant_key(namespace: str, tenant: str) -> str:
    """The set of ``tenant``'s leases. The tenant in braces is a Redis Cluster hash tag:
    its sessions' sets share its slot, as _TAKE needs (tenants are Identifiers: no braces)."""
    return f"fleet:{namespace}:in-flight:{{{tenant}}}"


def session_key(namespace: str, tenant: str, session: str) -> str:
    """The set of the leases of one generate session of ``tenant``."""
    return f"{tenant_key(namespace, tenant)}:session:{session}"


class LeasesUnavailable(ProviderError):
    """The leases' Redis is down (retryable: the failure table says what it comes to)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PROVIDER_DOWN, "tenant_leases", message)


class Lease:
    """One running job's place in its sets (``TenantLeases.take`` made it)."""

    __slots__ = ("keys", "lease_id")

    def __init__(self, keys: Sequence[str], lease_id: str) -> None:
        self.keys = list(keys)
        self.lease_id = lease_id


class TenantLeases:
    """This worker's side of the leases: takes, renews (one task, while any is held) and
    releases them."""

    def __init__(
        self, redis: RedisClient, namespace: str, *, ttl_s: float = 10.0, poll_s: float = 0.2
    ) -> None:
        self.namespace = namespace
        self.ttl_s = ttl_s
        # How often a job waiting for a place asks again (a place freed by this worker wakes
        # it at once; one freed elsewhere is seen at the next ask).
        self.poll_s = poll_s
        self._ttl_ms = int(ttl_s * 1000)
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._held: set[Lease] = set()
        self._renewer: asyncio.Task[None] | None = None

    async def take(self, keys: Sequence[str], limits: Sequence[int]) -> Lease | None:
        """A lease in every set of ``keys`` (each holding fewer than its limit), renewed
        from now on; None when one is full."""
        lease = Lease(keys, uuid.uuid4().hex)
        taken = await self._call(self._take, keys, [lease.lease_id, self._ttl_ms, *limits])
        if not taken:
            return None
        self._held.add(lease)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(
                self._keep_alive(), name="lease-renewer", context=contextvars.Context()
            )
        return lease

    async def release(self, lease: Lease) -> None:
        """Give the place back (a release that fails leaves it to expire)."""
        self._held.discard(lease)
        if not self._held and self._renewer is not None:
            renewer, self._renewer = self._renewer, None
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        await self._call(self._release, lease.keys, [lease.lease_id])

    async def _call(self, script: Any, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except REDIS_FAILURES as exc:
            raise LeasesUnavailable(f"Redis is unavailable: {exc}") from exc

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            # A renewal that fails (Redis briefly away) is tried again on the next tick.
            await asyncio.gather(
                *(
                    self._call(self._renew, lease.keys, [lease.lease_id, self._ttl_ms])
                    for lease in list(self._held)
                ),
                return_exceptions=True,
            )
