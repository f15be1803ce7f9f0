"""Once-only job execution across all replicas, kept in Redis.

Per request id: an attempt counter, a lock held (and renewed) while a worker runs the job,
and the encoded final reply once it is done. A delivery that finds the job done replays the
stored final reply instead of running it again; one that finds it locked waits for the
holder, and takes over (with the next attempt number) if the holder's lock expires because
it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Final

import msgspec
import redis.asyncio as aioredis

# KEYS: lock, attempt, done. ARGV: owner, lock ttl ms.
# Returns {"done", payload} | {"busy", ""} | {"start", attempt}.
_BEGIN: Final = """
local done = redis.call('GET', KEYS[3])
if done then return {'done', done} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local attempt = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], 86400000)
  return {'start', tostring(attempt - 1)}
end
return {'busy', ''}
"""
# KEYS: lock. ARGV: owner, ttl ms. Renews only a lock this worker still owns.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: lock, done. ARGV: owner, payload ('' to only release), done ttl s.
_END: Final = """
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class Started(msgspec.Struct, frozen=True):
    attempt: int


class AlreadyDone(msgspec.Struct, frozen=True):
    final_reply: bytes  # the encoded Final chunk (msgpack)


Claim = Started | AlreadyDone


class JobLedger:
    """The Redis side of once-only execution for one namespace."""

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str,
        *,
        lock_ttl_s: float = 10.0,
        result_ttl_s: int = 3600,
        poll_s: float = 0.5,
    ) -> None:
        self._redis = redis
        self._prefix = f"fleet:{namespace}:job"
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._result_ttl_s = result_ttl_s
        self._poll_s = poll_s
        self._owner = uuid.uuid4().hex
        self._begin = redis.register_script(_BEGIN)
        self._renew = redis.register_script(_RENEW)
        self._end = redis.register_script(_END)

    def _keys(self, request_id: str) -> tuple[str, str, str]:
        base = f"{self._prefix}:{request_id}"
        return f"{base}:lock", f"{base}:attempt", f"{base}:done"

    async def claim(self, request_id: str) -> Claim:
        """Wait until this worker may run the job (Started) or it is known done."""
        lock, attempt, done = self._keys(request_id)
        while True:
            state, value = await self._begin(
                keys=[lock, attempt, done], args=[self._owner, self._lock_ttl_ms]
            )
            if state == b"done":
                return AlreadyDone(bytes(value))
            if state == b"start":
                return Started(int(value))
            await asyncio.sleep(self._poll_s)  # another worker holds it: wait for its outcome

    @contextlib.asynccontextmanager
    async def held(self, request_id: str) -> AsyncIterator[None]:
        """Keep the lock alive while the job runs (a dead worker's lock expires)."""
        renewer = asyncio.create_task(self._keep_alive(self._keys(request_id)[0]))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def finish(self, request_id: str, final_reply: bytes) -> None:
        lock, _, done = self._keys(request_id)
        await self._end(keys=[lock, done], args=[self._owner, final_reply, self._result_ttl_s])

    async def release(self, request_id: str) -> None:
        """Give the job back unfinished (shutdown, failure): the next delivery reruns it."""
        lock, _, done = self._keys(request_id)
        await self._end(keys=[lock, done], args=[self._owner, "", self._result_ttl_s])

    async def _keep_alive(self, lock: str) -> None:
        while True:
            await asyncio.sleep(self._lock_ttl_ms / 3000)
            await self._renew(keys=[lock], args=[self._owner, self._lock_ttl_ms])
