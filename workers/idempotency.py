"""Once-only job execution across all replicas, kept in Redis.

Per request id: an attempt counter, a lock held (and renewed) while a worker runs the job,
and the encoded final reply once it is done, stored before it is sent (so a worker that dies
at the send leaves it to be replayed) and never replaced. A delivery that finds the job done
replays the stored final reply instead of running it again; one that finds it locked waits
for the holder, and takes over (with the next attempt number) if the holder's lock expires
because it died.

A ``running`` marker lives from an attempt's start to its end (finished or handed back), so
a marker found at the next start means the last worker died mid-job: those crashes are
counted, and a job that has crashed its worker more than ``max_crash_attempts`` times is
not started again (``CrashedTooOften``): the runner dead-letters it.

A dead-lettered job that got an error reply is recorded as done with that error, so a
redelivery would only replay it. ``reopen`` (for ``fleet dlq replay``) removes such a
failed outcome, so that the next delivery runs the job again.

Script calls made in the same event-loop iteration go to Redis as one script call per
script (per slot on a Redis Cluster), in one pipeline: under load most of the ledger's cost
was redis-py's per-command overhead, not Redis (``ScriptPipeline``, decision 0027).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, NamedTuple

import msgspec
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from contracts.codec import decode_chunk
from contracts.errors import ContractError, ErrorCode
from contracts.replies import ErrorReply
from providers.errors import ProviderError
from providers.redis_client import REDIS_FAILURES, RedisClient

# Every script below runs for many jobs in one call: the calls one event-loop iteration makes
# (the claims of one fetched batch, the ends of the jobs that finished together) go to Redis as
# one script call per script and slot. KEYS holds each job's keys in turn (K per job, the
# order JobKeys gives them), ARGV the call's shared values and then each job's own (A per job).
# The script returns one result per job, in order. Each job's part is what the script did for
# one job alone; the loop only shares the round trip and the per-call work of Redis and redis-py.

# K = 6: lock, attempt, done, cancelled, running, crashes. ARGV: owner, lock ttl ms, max
# crash attempts; per job (A = 2): the submission's deadline, and the lowest attempt number
# this delivery may run as (carried in the record: the counter may have been lost).
# Per job: {"done", payload} | {"cancelled", ""} | {"busy", ""} | {"start", attempt}
#        | {"crashed", attempt, crashes}.
_BEGIN: Final = """
local owner, ttl, max_crashes = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS / 6 do
  local k = (i - 1) * 6
  local submission, floor = ARGV[2 + 2 * i], tonumber(ARGV[3 + 2 * i])
  local found = redis.call('MGET', KEYS[k + 3], KEYS[k + 4], KEYS[k + 6])
  local done, cancelled = found[1], found[2]
  if done then
    out[i] = {'done', done}
  elseif cancelled == submission then
    out[i] = {'cancelled', ''}
  elseif redis.call('SET', KEYS[k + 1], owner, 'NX', 'PX', ttl) then
    local crashes = tonumber(found[3] or '0')
    if redis.call('EXISTS', KEYS[k + 5]) == 1 then
      crashes = redis.call('INCR', KEYS[k + 6])
      redis.call('EXPIRE', KEYS[k + 6], 86400)
    end
    redis.call('SET', KEYS[k + 5], owner, 'EX', 86400)
    local attempt = redis.call('INCR', KEYS[k + 2])
    if attempt <= floor then
      attempt = floor + 1
      redis.call('SET', KEYS[k + 2], attempt)
    end
    redis.call('PEXPIRE', KEYS[k + 2], 86400000)
    if crashes > max_crashes then
      out[i] = {'crashed', tostring(attempt - 1), tostring(crashes)}
    else
      out[i] = {'start', tostring(attempt - 1)}
    end
  else
    out[i] = {'busy', ''}
  end
end
return out
"""
# K = 1: lock. ARGV: owner, ttl ms. Renews only a lock this worker still owns.
_RENEW: Final = """
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    out[i] = redis.call('PEXPIRE', KEYS[i], ARGV[2])
  else
    out[i] = 0
  end
end
return out
"""
# K = 3: lock, done, running. ARGV: owner, done ttl s; per job (A = 1): the final reply
# ('' to only release). The first final stored stays: a run whose lock lapsed (Redis away
# longer than its TTL) while another took the job over gets the other's final back, and
# sends that (decision 0028). Per job: the final stored before, or '' when there was none.
_END: Final = """
local out = {}
for i = 1, #KEYS / 3 do
  local k = (i - 1) * 3
  out[i] = ''
  if ARGV[2 + i] ~= '' then
    local done = redis.call('GET', KEYS[k + 2])
    if done then
      out[i] = done
    else
      redis.call('SET', KEYS[k + 2], ARGV[2 + i], 'EX', ARGV[2])
    end
  end
  local held = redis.call('MGET', KEYS[k + 1], KEYS[k + 3])
  local mine = {}
  if held[1] == ARGV[1] then mine[#mine + 1] = KEYS[k + 1] end
  if held[2] == ARGV[1] then mine[#mine + 1] = KEYS[k + 3] end
  if #mine > 0 then redis.call('DEL', unpack(mine)) end
end
return out
"""
# K = 4: lock, done, running, crashes. No shared ARGV; per job (A = 1): the done record the
# caller judged a failure ('' when it found none). Removes the job's outcome, crash count and
# running marker only while no worker holds the job and the outcome is still that one.
# Per job: 'reopened' | 'running' | 'changed'.
_REOPEN: Final = """
local out = {}
for i = 1, #KEYS / 4 do
  local k = (i - 1) * 4
  if redis.call('EXISTS', KEYS[k + 1]) == 1 then
    out[i] = 'running'
  elseif (redis.call('GET', KEYS[k + 2]) or '') ~= ARGV[i] then
    out[i] = 'changed'
  else
    redis.call('DEL', KEYS[k + 2], KEYS[k + 3], KEYS[k + 4])
    out[i] = 'reopened'
  end
end
return out
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


class JobScript:
    """A ledger script that runs for many jobs in one call (the comment above _BEGIN): its
    source, and the values its calls share (ARGV's head)."""

    def __init__(self, redis: RedisClient, source: str, shared: Sequence[str | int] = ()) -> None:
        self.script = redis.register_script(source)
        self.shared = list(shared)


class _Call:
    __slots__ = ("args", "future", "keys", "script")

    def __init__(
        self,
        script: JobScript,
        keys: Sequence[str],
        args: Sequence[str | int | bytes],
        future: asyncio.Future[Any],
    ) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.future = future


class ScriptPipeline:
    """Runs the ledger's script calls for single jobs, joining those made in one event-loop
    iteration: one script call per script (and, on a Redis Cluster, per slot) for all of
    them, and one pipeline for those script calls.

    Under load most of the ledger's cost was redis-py's per-command work, not Redis: 85 us of
    worker CPU a call alone, 12 us pipelined (bench/roundtrip.py), and fewer again since the
    calls of one iteration became one script call (bench/NOTES.md).
    """

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._cluster = isinstance(redis, RedisCluster)
        self._calls: list[_Call] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def call(
        self, script: JobScript, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> Any:
        """``script``'s result for one job (its ``keys``, its own ``args``)."""
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

    def _groups(self, calls: list[_Call]) -> list[list[_Call]]:
        """The calls that can share one script call: same script, and on a cluster the same
        slot (each job's keys share one, through their hash tag)."""
        groups: dict[tuple[int, int], list[_Call]] = {}
        for call in calls:
            slot = key_slot(call.keys[0].encode()) if self._cluster else 0
            groups.setdefault((id(call.script), slot), []).append(call)
        return list(groups.values())

    async def _flush(self) -> None:
        calls, self._calls = self._calls, []
        groups = self._groups(calls)
        try:
            results = await self._execute(groups)
        except BaseException as exc:
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for group, result in zip(groups, results, strict=True):
            for i, call in enumerate(group):
                if call.future.done():  # the caller was cancelled
                    continue
                if isinstance(result, Exception):
                    call.future.set_exception(result)
                else:
                    call.future.set_result(result[i])

    async def _execute(self, groups: list[list[_Call]]) -> list[Any]:
        results = await self._pipeline(groups)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # First use, or Redis restarted: load the scripts, rerun only the calls that
            # did not run (a script that ran must not run twice).
            for i in missing:
                script = groups[i][0].script.script
                script.sha = await self._redis.script_load(script.script)
            rerun = await self._pipeline([groups[i] for i in missing])
            for i, result in zip(missing, rerun, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, groups: list[list[_Call]]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for group in groups:
            script = group[0].script
            keys = [key for call in group for key in call.keys]
            args = [arg for call in group for arg in call.args]
            # Not pipe.evalsha: a cluster pipeline refuses that method, yet sends EVALSHA
            # to the node of its keys (one slot per group).
            pipe.execute_command(
                "EVALSHA", script.script.sha, len(keys), *keys, *script.shared, *args
            )
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
        self._poll_s = poll_s
        self._owner = uuid.uuid4().hex
        # A job's keys, built once for its claim, its lock and its end (jobs in flight fit).
        self._keys = functools.lru_cache(maxsize=4096)(functools.partial(JobKeys.of, namespace))
        self._scripts = ScriptPipeline(redis)
        self._begin = JobScript(redis, _BEGIN, [self._owner, self._lock_ttl_ms, max_crash_attempts])
        self._renew = JobScript(redis, _RENEW, [self._owner, self._lock_ttl_ms])
        self._end = JobScript(redis, _END, [self._owner, result_ttl_s])
        self._reopen = JobScript(redis, _REOPEN)
        # Locks this worker holds (with a count: the same id can run twice here), renewed
        # together by one task that runs only while any is held.
        self._held: dict[str, int] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def claim(self, job: str, submission: str = "", *, floor: int = 0) -> Claim:
        """Wait until this worker may run the job (Started), or it is known done, or this
        submission (told apart from a later resubmission of the same id by ``submission``,
        its deadline) was cancelled. A started attempt is numbered ``floor`` at least."""
        keys = self._keys(job)  # in the order _BEGIN takes them
        args = (submission, floor)
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

    def held(self, job: str) -> AbstractAsyncContextManager[None]:
        """Keep the lock alive while the job runs (a dead worker's lock expires)."""
        return _Held(self, self._keys(job).lock)

    def _hold(self, lock: str) -> None:
        self._held[lock] = self._held.get(lock, 0) + 1
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(
                self._keep_alive(), name="ledger-renewer", context=contextvars.Context()
            )

    async def _let_go(self, lock: str) -> None:
        count = self._held.pop(lock) - 1
        if count:
            self._held[lock] = count
        if not self._held and self._renewer is not None:
            renewer, self._renewer = self._renewer, None
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def finish(self, job: str, final_reply: bytes) -> bytes | None:
        """Store the job's final reply and let go of it; None when this one was stored, else
        the final reply another run of the job stored before (which stays)."""
        earlier = await self._scripts.call(self._end, self._keys(job).ending(), (final_reply,))
        return bytes(earlier) if earlier else None

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
        await self._scripts.call(self._end, self._keys(job).ending(), ("",))

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
            state = await self._scripts.call(self._reopen, keys.reopening(), (done or b"",))
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
                *(self._scripts.call(self._renew, (lock,), ()) for lock in list(self._held)),
                return_exceptions=True,
            )


class _Held:
    """``JobLedger.held``: a plain context manager, where a generator-based one cost
    microseconds on every job."""

    __slots__ = ("_ledger", "_lock")

    def __init__(self, ledger: JobLedger, lock: str) -> None:
        self._ledger = ledger
        self._lock = lock

    async def __aenter__(self) -> None:
        self._ledger._hold(self._lock)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._ledger._let_go(self._lock)
