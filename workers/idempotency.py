"""Once-only job execution across all replicas, kept in Redis.

Per request id: an attempt counter, a lock held (and renewed) while a worker runs the job,
and the encoded final reply once it is done. A delivery that finds the job done replays the
stored final reply instead of running it again; one that finds it locked waits for the
holder, and takes over (with the next attempt number) if the holder's lock expires because
it died.

A ``running`` marker lives from an attempt's start to its end (finished or handed back), so
a marker found at the next start means the last worker died mid-job: those crashes are
counted, and a job that has crashed its worker more than ``max_crash_attempts`` times is
not started again (``CrashedTooOften``): the runner dead-letters it.

A dead-lettered job that got an error reply is recorded as done with that error, so a
redelivery would only replay it. ``reopen`` (for ``fleet dlq replay``) removes such a
failed outcome, so that the next delivery runs the job again.

Script calls made in the same event-loop iteration go to Redis as one pipeline: under load
most of the ledger's cost was redis-py's per-command overhead, not Redis (bench/roundtrip.py
measured 85 us of worker CPU per call alone, 12 us pipelined).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final, NamedTuple

import msgspec
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from contracts.codec import decode_chunk
from contracts.errors import ContractError, ErrorCode
from contracts.replies import ErrorReply
from providers.errors import ProviderError
from providers.redis_client import REDIS_FAILURES, RedisClient

# KEYS: lock, attempt, done, cancelled, running, crashes.
# ARGV: owner, lock ttl ms, the submission's deadline, max crash attempts, the lowest attempt
# number this delivery may run as (carried in the record: the counter may have been lost).
# Returns {"done", payload} | {"cancelled", ""} | {"busy", ""} | {"start", attempt}
#       | {"crashed", attempt, crashes}.
_BEGIN: Final = """
local done = redis.call('GET', KEYS[3])
if done then return {'done', done} end
if redis.call('GET', KEYS[4]) == ARGV[3] then return {'cancelled', ''} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local crashes = tonumber(redis.call('GET', KEYS[6]) or '0')
  if redis.call('EXISTS', KEYS[5]) == 1 then
    crashes = redis.call('INCR', KEYS[6])
    redis.call('EXPIRE', KEYS[6], 86400)
  end
  redis.call('SET', KEYS[5], ARGV[1], 'EX', 86400)
  local attempt = redis.call('INCR', KEYS[2])
  if attempt <= tonumber(ARGV[5]) then
    attempt = tonumber(ARGV[5]) + 1
    redis.call('SET', KEYS[2], attempt)
  end
  redis.call('PEXPIRE', KEYS[2], 86400000)
  if crashes > tonumber(ARGV[4]) then
    return {'crashed', tostring(attempt - 1), tostring(crashes)}
  end
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
# KEYS: lock, done, running. ARGV: owner, payload ('' to only release), done ttl s.
_END: Final = """
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 1
"""
# KEYS: lock, done, running, crashes. ARGV: the done record the caller judged a failure
# ('' when it found none). Removes the job's outcome, crash count and running marker only
# while no worker holds the job and the outcome is still that one.
# Returns 'reopened' | 'running' | 'changed'.
_REOPEN: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'running' end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 'changed' end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return 'reopened'
"""


class Started(msgspec.Struct, frozen=True):
    attempt: int


class AlreadyDone(msgspec.Struct, frozen=True):
    final_reply: bytes  # the encoded Final chunk (msgpack)


class Cancelled(msgspec.Struct, frozen=True):
    """This submission's caller cancelled it before it finished: do not run it."""


class CrashedTooOften(msgspec.Struct, frozen=True):
    """The job's workers died while running it more than ``max_crash_attempts`` times: it
    is not run again. The claim holds the lock, so ``finish`` must follow."""

    attempt: int
    crashes: int


Claim = Started | AlreadyDone | Cancelled | CrashedTooOften


class Reopening(enum.Enum):
    """What ``JobLedger.reopen`` did with a job."""

    REOPENED = "reopened"  # nothing stored, or its failure removed: the next delivery runs it
    SUCCEEDED = "succeeded"  # its stored final reply is an answer: left as it is
    RUNNING = "running"  # a worker holds it now: left as it is


class JobKeys(NamedTuple):
    """One job's keys in the ledger (the one place their layout is written), in the order
    _BEGIN takes them."""

    lock: str
    attempt: str
    done: str
    cancelled: str
    running: str
    crashes: str

    @classmethod
    def of(cls, namespace: str, job: str) -> JobKeys:
        """The keys of ``job`` (a ``job_ref``). Its part in braces is a Redis Cluster hash
        tag: every key of one job lives in one slot, as the ledger's scripts need."""
        base = f"fleet:{namespace}:job:{{{job}}}"
        return cls(*(f"{base}:{name}" for name in cls._fields))

    def ending(self) -> list[str]:
        """The keys _END takes."""
        return [self.lock, self.done, self.running]

    def reopening(self) -> list[str]:
        """The keys _REOPEN takes."""
        return [self.lock, self.done, self.running, self.crashes]


class LedgerUnavailable(ProviderError):
    """The ledger's store is down: the one error its callers see (retryable, so
    ``call_with_retry`` tries again; the failure table says what it comes to after that)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PROVIDER_DOWN, "ledger", message)


def _unavailable(exc: BaseException) -> LedgerUnavailable:
    return LedgerUnavailable(f"Redis is unavailable: {exc}")


class _Call:
    __slots__ = ("args", "future", "keys", "script")

    def __init__(
        self,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[str | int | bytes],
        future: asyncio.Future[Any],
    ) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.future = future


class ScriptPipeline:
    """Runs Lua script calls, coalescing those made in one loop iteration into one pipeline.

    Each call is still its own atomic script; only the round trip and redis-py's
    per-command work are shared.
    """

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._calls: list[_Call] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._calls:
            # Runs on the next iteration, after every call made in this one is queued.
            flush = asyncio.create_task(self._flush(), context=contextvars.Context())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        self._calls.append(_Call(script, keys, args, future))
        try:
            return await future
        except REDIS_FAILURES as exc:
            raise _unavailable(exc) from exc

    async def _flush(self) -> None:
        calls, self._calls = self._calls, []
        try:
            results = await self._execute(calls)
        except BaseException as exc:
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for call, result in zip(calls, results, strict=True):
            if call.future.done():  # the caller was cancelled
                continue
            if isinstance(result, Exception):
                call.future.set_exception(result)
            else:
                call.future.set_result(result)

    async def _execute(self, calls: list[_Call]) -> list[Any]:
        results = await self._pipeline(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # First use, or Redis restarted: load the scripts, rerun only the calls that
            # did not run (a script that ran must not run twice).
            for script in {id(calls[i].script): calls[i].script for i in missing}.values():
                script.sha = await self._redis.script_load(script.script)
            rerun = await self._pipeline([calls[i] for i in missing])
            for i, result in zip(missing, rerun, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for call in calls:
            # Not pipe.evalsha: a cluster pipeline refuses that method, yet sends EVALSHA
            # to the node of its keys (one slot: each job's keys share a hash tag).
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results


def _is_failure(final_reply: bytes) -> bool:
    """Whether a stored final reply is an error (one that does not decode is no answer)."""
    try:
        return isinstance(decode_chunk(final_reply), ErrorReply)
    except ContractError:
        return True


def job_ref(kind: str, tenant: str, request_id: str) -> str:
    """What the ledger knows a job by: its request id within its kind and tenant, so no
    stored answer, lock or cancel crosses tenants or kinds (tenants and ids are
    Identifiers, which hold no "/" or braces)."""
    return f"{kind}/{tenant}/{request_id}"


def tenant_submission(tenant: str, submission: str) -> str:
    """What tells one tenant's submission of a request id apart in the ledger's cancel
    record: a cancel from another tenant never matches it."""
    return f"{tenant}/{submission}"


class JobLedger:
    """The Redis side of once-only execution for one namespace. Its methods take a job as
    ``job_ref`` names it (kind, tenant and request id)."""

    def __init__(
        self,
        redis: RedisClient,
        namespace: str,
        *,
        lock_ttl_s: float = 10.0,
        result_ttl_s: int = 3600,
        max_crash_attempts: int = 3,
        poll_s: float = 0.5,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._result_ttl_s = result_ttl_s
        self._max_crash_attempts = max_crash_attempts
        self._poll_s = poll_s
        self._owner = uuid.uuid4().hex
        self._scripts = ScriptPipeline(redis)
        self._begin = redis.register_script(_BEGIN)
        self._renew = redis.register_script(_RENEW)
        self._end = redis.register_script(_END)
        self._reopen = redis.register_script(_REOPEN)
        # Locks this worker holds (with a count: the same id can run twice here), renewed
        # together by one task that runs only while any is held.
        self._held: dict[str, int] = {}
        self._renewer: asyncio.Task[None] | None = None

    def _keys(self, job: str) -> JobKeys:
        return JobKeys.of(self._namespace, job)

    async def claim(self, job: str, submission: str = "", *, floor: int = 0) -> Claim:
        """Wait until this worker may run the job (Started), or it is known done, or this
        submission (told apart from a later resubmission of the same id by ``submission``,
        its deadline) was cancelled. A started attempt is numbered ``floor`` at least."""
        keys = list(self._keys(job))  # the order _BEGIN's KEYS expect
        args: list[str | int] = [
            self._owner, self._lock_ttl_ms, submission, self._max_crash_attempts, floor
        ]  # fmt: skip
        while True:
            state, *values = await self._scripts.call(self._begin, keys, args)
            if state == b"done":
                return AlreadyDone(bytes(values[0]))
            if state == b"start":
                return Started(int(values[0]))
            if state == b"crashed":
                return CrashedTooOften(attempt=int(values[0]), crashes=int(values[1]))
            if state == b"cancelled":
                return Cancelled()
            await asyncio.sleep(self._poll_s)  # another worker holds it: wait for its outcome

    @contextlib.asynccontextmanager
    async def held(self, job: str) -> AsyncIterator[None]:
        """Keep the lock alive while the job runs (a dead worker's lock expires)."""
        lock = self._keys(job).lock
        self._held[lock] = self._held.get(lock, 0) + 1
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(
                self._keep_alive(), name="ledger-renewer", context=contextvars.Context()
            )
        try:
            yield
        finally:
            count = self._held.pop(lock) - 1
            if count:
                self._held[lock] = count
            if not self._held and self._renewer is not None:
                renewer, self._renewer = self._renewer, None
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer

    async def finish(self, job: str, final_reply: bytes) -> None:
        await self._scripts.call(
            self._end,
            self._keys(job).ending(),
            [self._owner, final_reply, self._result_ttl_s],
        )

    async def cancel(self, job: str, submission: str) -> None:
        """Remember that the caller cancelled this submission of the job, so that no worker
        starts it (or starts it again) later."""
        key = self._keys(job).cancelled
        try:
            await self._redis.set(key, submission, ex=self._result_ttl_s)
        except REDIS_FAILURES as exc:
            raise _unavailable(exc) from exc

    async def first_to_claim(self, what: str) -> bool:
        """True for the one caller, across every replica, that claims ``what`` first (for a
        day): say, the replica that dead-letters a bad control message all of them read."""
        try:
            won = await self._redis.set(
                f"fleet:{self._namespace}:once:{what}", self._owner, nx=True, ex=86400
            )
        except REDIS_FAILURES as exc:
            raise _unavailable(exc) from exc
        return bool(won)

    async def release(self, job: str) -> None:
        """Give the job back unfinished (shutdown, failure): the next delivery reruns it."""
        await self._scripts.call(
            self._end, self._keys(job).ending(), [self._owner, "", self._result_ttl_s]
        )

    async def reopen(self, job: str) -> Reopening:
        """Make a job that ended in failure runnable again (an operator replays its dead
        letter): its stored error reply, its crash count and a stale running marker are
        removed, so the next delivery runs it instead of replaying the error, and a job that
        crashed its workers starts counting again. Its attempt counter stays (attempt
        numbers only rise) and so does a caller's cancel (a cancelled submission is still
        not run). A job whose stored final reply is an answer is left as it is (it ran: a
        delivery gets that answer back), and so is one a worker holds now."""
        keys = self._keys(job)
        while True:
            try:
                stored = await self._redis.get(keys.done)
            except REDIS_FAILURES as exc:
                raise _unavailable(exc) from exc
            done = stored.encode() if isinstance(stored, str) else stored
            if done is not None and not _is_failure(done):
                return Reopening.SUCCEEDED
            state = await self._scripts.call(self._reopen, keys.reopening(), [done or b""])
            if state == b"reopened":
                return Reopening.REOPENED
            if state == b"running":
                return Reopening.RUNNING
            # b"changed": a worker ended the job meanwhile; judge its new outcome

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._lock_ttl_ms / 3000)
            # A failed renewal (Redis briefly away) is tried again on the next tick.
            await asyncio.gather(
                *(
                    self._scripts.call(self._renew, [lock], [self._owner, self._lock_ttl_ms])
                    for lock in list(self._held)
                ),
                return_exceptions=True,
            )
