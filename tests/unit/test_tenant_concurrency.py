"""A tenant's ``max_in_flight`` across replicas: four job runners on the real Redis, each
with its own leases (as four workers have), share one chat provider whose record of starts
and ends the tests read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest

from contracts import CancelJob, ChatMessage, ErrorCode, ErrorReply, GenerateResult
from contracts.codec import encode
from contracts.envelope import ReplyAddress
from contracts.generate import GenerateRequest
from contracts.replies import Final
from providers.chat import ChatEvent, ChatParams
from providers.memory.redis_memory import RedisMemory, RedisMemoryConfig
from providers.redis_client import RedisClient, connect_redis
from providers.router import ModelRouter
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.job_runner_harness import MODEL, REPLIES, Fixture, _final, _record
from workers.handlers.generate import GenerateHandler
from workers.metrics import Outcome
from workers.runtime.lanes import LaneGate
from workers.runtime.runner import TurnSettings
from workers.settings import TenantSettings
from workers.tenant_leases import TenantLeases, session_key, tenant_key

LIMITED = {"acme": TenantSettings(max_in_flight=2)}


class RecordingChat(ScriptedChat):
    """Writes down each call's start and end, by its message ("<tenant>[/<session>/<id>]");
    holds every call until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.record: list[tuple[str, str]] = []  # ("start" | "end", message)
        self.go = asyncio.Event()

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        tenant = str(messages[-1].content)
        self.record.append(("start", tenant))
        try:
            await self.go.wait()
            async for event in super().stream_chat(messages, params):
                yield event
        finally:
            self.record.append(("end", tenant))

    def started(self, prefix: str) -> int:
        """Calls started whose message begins with ``prefix``."""
        return sum(event == "start" and who.startswith(prefix) for event, who in self.record)

    def most_at_once(self, prefix: str) -> int:
        running = most = 0
        for event, who in self.record:
            if who.startswith(prefix):
                running += 1 if event == "start" else -1
                most = max(most, running)
        return most


class LeaseCounting(ScriptedChat):
    """Counts the leases in one set as each call starts."""

    def __init__(self, redis: RedisClient, key: str) -> None:
        super().__init__()
        self._redis, self._key = redis, key
        self.leases_seen: list[int] = []

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        self.leases_seen.append(await self._redis.zcard(self._key))
        async for event in super().stream_chat(messages, params):
            yield event


async def _leases(redis: RedisClient, key: str) -> dict[bytes, float]:
    """The leases in ``key``'s set, each with its expiry (milliseconds of Redis's clock)."""
    found = await redis.zrange(key, 0, -1, withscores=True)
    return dict(cast(list[tuple[bytes, float]], found))


async def _redis_ms(redis: RedisClient) -> int:
    """Redis's clock in milliseconds, as the lease scripts read it."""
    seconds, microseconds = await redis.time()
    return seconds * 1000 + microseconds // 1000


def _job(tenant: str, number: int, message: str = "", **fields: object) -> GenerateRequest:
    return GenerateRequest(
        request_id=f"{tenant}-{number}",
        tenant=tenant,
        model=MODEL,
        messages=[ChatMessage(role="user", content=message or tenant)],
        reply_to=ReplyAddress(topic=REPLIES, partition=0),
        **fields,  # type: ignore[arg-type]
    )


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for ``condition`` (a state the jobs reach), failing after ``timeout_s``."""
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout_s}s")


def _gauge(replica: Fixture, name: str, tenant: str) -> float:
    labels = {"kind": "generate", "tenant": tenant}
    return replica.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.redis
async def test_four_replicas_never_run_more_than_the_limit_and_others_pass(
    redis: RedisClient, ledger_namespace: str
) -> None:
    chat = RecordingChat()
    # Renewed every second: a lease lapses only where its replica's loop stalls for two.
    ttl_s = 3.0
    replicas = [
        Fixture(
            chat=chat,
            turns=TurnSettings(
                TenantLeases(redis, ledger_namespace, ttl_s=ttl_s, poll_s=0.05), LIMITED
            ),
        )
        for _ in range(4)
    ]
    jobs = [
        asyncio.create_task(replica.runner.run(_record(encode(_job(tenant, n)))))
        for n, replica in enumerate(replicas)
        for tenant in ("acme", "acme", "globex")
    ]

    def waiting() -> float:
        return sum(_gauge(r, "fleet_tenant_jobs_waiting", "acme") for r in replicas)

    # globex has no limit: all four of its jobs run beside acme's two; acme's other six wait.
    await _until(lambda: chat.started("globex") == 4 and waiting() == 6)
    assert chat.started("acme") == 2
    assert sum(_gauge(r, "fleet_tenant_leases", "acme") for r in replicas) == 2
    # The running jobs' leases are renewed, each past the expiry it was taken with (the
    # same two leases all along): still only two run.
    key = tenant_key(ledger_namespace, "acme")
    taken = await _leases(redis, key)
    assert len(taken) == 2
    async with asyncio.timeout(10):
        while True:
            held = await _leases(redis, key)
            assert held.keys() == taken.keys(), "a running job's lease lapsed"
            if all(held[lease] > expiry for lease, expiry in taken.items()):
                break
            await asyncio.sleep(0.05)
    assert chat.started("acme") == 2

    chat.go.set()
    async with asyncio.timeout(15):
        await asyncio.gather(*jobs)
    assert chat.started("acme") == 8
    assert chat.most_at_once("acme") == 2
    for replica in replicas:
        finals = [c for c in replica.publisher.replies(REPLIES) if isinstance(c, Final)]
        assert len(finals) == 3
        assert all(isinstance(final, GenerateResult) for final in finals)
        assert _gauge(replica, "fleet_tenant_leases", "acme") == 0
    assert waiting() == 0
    assert await redis.zcard(tenant_key(ledger_namespace, "acme")) == 0


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_dead_replicas_leases_free_within_the_lease_time(
    redis: RedisClient, ledger_namespace: str
) -> None:
    ttl_s = 0.8
    # A replica took both of acme's places and died: it neither renews nor releases them.
    dead = TenantLeases(redis, ledger_namespace, ttl_s=ttl_s)
    keys = [tenant_key(ledger_namespace, "acme")]
    before = await _redis_ms(redis)
    assert await dead.take(keys, [2]) is not None
    assert await dead.take(keys, [2]) is not None
    after = await _redis_ms(redis)
    assert await dead.take(keys, [2]) is None  # full
    assert dead._renewer is not None
    dead._renewer.cancel()  # its process is gone: nothing renews
    # Each expires the lease time after it was taken, by Redis's clock.
    expiries = list((await _leases(redis, keys[0])).values())
    ttl_ms = int(ttl_s * 1000)
    assert len(expiries) == 2
    assert all(before + ttl_ms <= expiry <= after + ttl_ms for expiry in expiries), expiries

    chat = LeaseCounting(redis, keys[0])
    leases = TenantLeases(redis, ledger_namespace, ttl_s=ttl_s, poll_s=0.05)
    live = Fixture(chat=chat, turns=TurnSettings(leases, LIMITED))
    # A job whose deadline passes while it waits ends with the deadline's typed timeout.
    soon = int(time.time() * 1000) + 200
    await live.runner.run(_record(encode(_job("acme", 1, deadline_ms=soon))))
    expired = _final(live.publisher.replies(REPLIES))
    assert isinstance(expired, ErrorReply)
    assert expired.code is ErrorCode.TIMEOUT
    assert chat.calls == 0

    # One without a deadline runs once the dead replica's leases expire: as it runs, its
    # own lease is the only one left.
    async with asyncio.timeout(10):
        await live.runner.run(_record(encode(_job("acme", 2))))
    assert chat.calls == 1
    assert chat.leases_seen == [1]
    assert isinstance(_final(live.publisher.replies(REPLIES)), GenerateResult)


async def test_a_tenant_without_a_limit_costs_no_redis_call() -> None:
    dead_redis = connect_redis("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        job = Fixture(turns=TurnSettings(TenantLeases(dead_redis, "unit"), LIMITED))
        await job.runner.run(_record(encode(_job("globex", 1))))
    finally:
        await dead_redis.aclose()
    assert isinstance(_final(job.publisher.replies(REPLIES)), GenerateResult)


def test_jobs_waiting_their_turn_lend_their_slots() -> None:
    gate = LaneGate(slots=2, batch_limit=1)
    for _ in range(2):
        gate.started("interactive")
        gate.waiting("interactive")
    # Both slots hold a job that waits for its tenant: other jobs still start in them.
    assert gate.room("interactive") == 2
    for _ in range(2):
        gate.started("interactive")
    assert gate.room("interactive") == 0
    # A turn comes: the job runs at once, beside the full slots.
    gate.resumed("interactive")
    assert gate.running("interactive") == 3
    assert gate.room("interactive") == 0


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_lease_takes_a_place_in_its_tenant_and_its_session_or_in_neither(
    redis: RedisClient, ledger_namespace: str
) -> None:
    leases = TenantLeases(redis, ledger_namespace)
    tenant = tenant_key(ledger_namespace, "acme")
    chat_1, chat_2 = (session_key(ledger_namespace, "acme", s) for s in ("chat-1", "chat-2"))
    first = await leases.take([tenant, chat_1], [2, 1])
    assert first is not None
    assert await leases.take([tenant, chat_1], [2, 1]) is None  # the session is full
    assert await redis.zcard(tenant) == 1  # ... and took no place in the tenant's set
    second = await leases.take([tenant, chat_2], [2, 1])
    assert second is not None
    assert await leases.take([tenant, chat_1], [3, 1]) is None
    await leases.release(first)
    third = await leases.take([tenant, chat_1], [2, 1])
    assert third is not None
    for lease in (second, third):
        await leases.release(lease)
    assert await redis.exists(tenant, chat_1, chat_2) == 0


@pytest.mark.redis
async def test_a_sessions_turns_wait_with_their_slot_lent_and_a_cancel_stops_a_waiting_one(
    redis: RedisClient, ledger_namespace: str
) -> None:
    chat = RecordingChat()
    memory = RedisMemory(RedisMemoryConfig(key_prefix=f"fleet:{ledger_namespace}:memory"), redis)
    gate = LaneGate(slots=4, batch_limit=1)
    leases = TenantLeases(redis, ledger_namespace, poll_s=0.05)
    limits = {"acme": TenantSettings(max_in_flight_per_session=1)}
    replica = Fixture(
        chat=chat,
        handler=GenerateHandler(ModelRouter("chat", [chat]), memory),
        turns=TurnSettings(leases, limits, gate),
    )
    requests = [
        _job("acme", n, f"acme/{session}/acme-{n}", session_id=session)
        for n, session in enumerate(("s1", "s1", "s2"))
    ]
    jobs = []
    for request in requests:
        gate.started("interactive")  # as the consume loop does before it runs a job
        jobs.append(asyncio.create_task(replica.runner.run(_record(encode(request)))))

    def waiting() -> float:
        return _gauge(replica, "fleet_tenant_jobs_waiting", "acme")

    await _until(lambda: chat.started("acme/s1") == 1 and chat.started("acme/s2") == 1)
    await _until(lambda: waiting() == 1)
    assert gate.running("interactive") == 2  # the waiting turn lent its slot back

    # The caller of the waiting turn gives up: it ends, never having run.
    (running,) = (who for event, who in chat.record if who.startswith("acme/s1"))
    (waiter,) = (r for r in requests[:2] if not running.endswith(r.request_id))
    await replica.runner.cancel(CancelJob(request_id=waiter.request_id, tenant="acme"))
    await _until(lambda: replica.count(Outcome.CANCELLED) == 1)
    assert waiting() == 0
    assert gate.running("interactive") == 3

    chat.go.set()
    async with asyncio.timeout(10):
        await asyncio.gather(*jobs)
    assert chat.started("acme/s1") == 1
    assert [who for event, who in chat.record if event == "end"].count(running) == 1
    finals = [c for c in replica.publisher.replies(REPLIES) if isinstance(c, Final)]
    assert len(finals) == 2
    assert all(isinstance(final, GenerateResult) for final in finals)
