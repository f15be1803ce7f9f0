"""Each kind of Kafka client the fleet opens, through each secured listener of the local
broker: SASL_SSL with SCRAM-SHA-512, and TLS with a client certificate (mTLS). One set of
in-process workers per listener serves every test of that listener: the SDK (private and
shared reply topics), the four worker kinds, the retry forwarder, the control listener, the
batch coordinator with BatchClient, and the `fleet` commands that read the cluster.

This replaces running the whole suite a second time through SASL_SSL: what differs on a
secured cluster is how each client connects, not what the jobs do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pytest
from aiokafka import AIOKafkaProducer

from contracts import ErrorCode, TextDelta, VectorRecord
from contracts.names import reply_topic, request_topic, shared_reply_topic
from producer_sdk import BatchClient, FleetClient, FleetRequestError
from providers.chat import ChatCapabilities
from providers.router import ModelRouter
from tests.conftest import REPO, Infra
from tests.integration.harness import read_dead_letters, topic_names, until
from tests.integration.scripted_chat import ScriptedChat
from transport.connection import SECURITY_ENV
from transport.topic_admin import ensure_topics
from workers import Worker, WorkerSettings, build_worker
from workers.batch.coordinator import BatchCoordinator
from workers.handlers.generate import GenerateHandler
from workers.ops.cli import main as fleet_main
from workers.ops.local_kafka import local_secured_listeners
from workers.retry import RetryPolicy

pytestmark = [
    pytest.mark.secured,
    pytest.mark.kafka,
    pytest.mark.private_kafka,
    pytest.mark.redis,
    pytest.mark.model,
]

Listener = Literal["sasl_ssl", "mtls"]
EMBED_MODEL = "all-minilm-l6-v2"
WHISPER_MODEL = "whisper-tiny.en"
SPEECH = REPO / "workers/ops/assets/demo-speech.wav"


class NamedChat(ScriptedChat):
    """A scripted chat serving one model of its own, so that one generate worker can hold
    the echo, flaky, slow and broken providers the tests of a listener need."""

    def __init__(
        self,
        model: str,
        *,
        echo: bool = False,
        pieces: tuple[str, ...] = ("Hello", ", ", "world"),
        piece_delay_s: float = 0.0,
        failures: list[ErrorCode] | None = None,
    ) -> None:
        super().__init__(echo=echo, pieces=pieces, piece_delay_s=piece_delay_s, failures=failures)
        self.name = self.model = model

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(models=(self.model,))


class _Service(Protocol):
    """What a worker and the batch coordinator have in common."""

    ready: asyncio.Event

    async def run(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class SecuredFleet:
    """The workers of one listener, and a client of the test's own on it."""

    listener: Listener
    infra: Infra  # the listener's address and security, and the suite's Redis
    settings: WorkerSettings
    client: FleetClient
    echo: NamedChat
    flaky: NamedChat
    slow: NamedChat
    broken: NamedChat

    @property
    def namespace(self) -> str:
        return self.settings.namespace


@asynccontextmanager
async def _all_serving(services: list[_Service]) -> AsyncIterator[None]:
    """Run every service until the block ends; they start side by side (joining their
    groups and loading their models at once), and a service that cannot start fails it."""
    tasks = [asyncio.create_task(s.run()) for s in services]
    readiness = [asyncio.create_task(s.ready.wait()) for s in services]
    try:
        pending = {*tasks, *readiness}
        while not all(r.done() for r in readiness):
            done, pending = await asyncio.wait(
                pending, timeout=120, return_when=asyncio.FIRST_COMPLETED
            )
            assert done, "the secured fleet did not start within 120 s"
            for task in done & set(tasks):
                task.result()  # a service stopped while starting: show why
                raise AssertionError("a service stopped before it was ready")
        yield
    finally:
        for service in services:
            service.stop()
        for ready in readiness:
            ready.cancel()
        ended = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        for outcome in ended:
            if isinstance(outcome, BaseException):
                raise outcome  # a service that failed while the tests ran


@pytest.fixture(scope="module", params=["sasl_ssl", "mtls"])
async def fleet(request: pytest.FixtureRequest, infra: Infra) -> AsyncIterator[SecuredFleet]:
    listener: Listener = request.param
    listeners = local_secured_listeners()
    if listener == "sasl_ssl":
        secured = Infra(listeners.sasl_ssl, infra.redis_url, listeners.sasl("SCRAM-SHA-512"))
    else:
        secured = Infra(listeners.ssl, infra.redis_url, listeners.mutual_tls())
    settings = WorkerSettings(
        bootstrap_servers=secured.bootstrap_servers,
        kafka=secured.security,
        redis_url=secured.redis_url,
        namespace=f"secured-{listener}-{uuid.uuid4().hex[:8]}",
        partitions=1,
        concurrency=4,
        shutdown_grace_s=5,
        # One redelivery after 0.2 s: the flaky model's job answers on its second attempt,
        # the broken model's is dead-lettered after it.
        retry=RetryPolicy(max_retries=1, tiers_s=(0.2,)),
    )
    chats = {
        "echo": NamedChat("echo-model", echo=True, pieces=()),
        "flaky": NamedChat("flaky-model"),
        "slow": NamedChat("slow-model", pieces=("word ",) * 200, piece_delay_s=0.05),
        "broken": NamedChat("broken-model", failures=[ErrorCode.PROVIDER_DOWN] * 1000),
    }
    generate = Worker(
        "generate", settings, GenerateHandler(ModelRouter("chat", list(chats.values())))
    )
    others = [await build_worker(kind, settings) for kind in ("embed", "transcribe", "vectors")]
    async with (
        _all_serving([generate, *others, BatchCoordinator(settings)]),
        secured.client(namespace=settings.namespace, default_timeout_s=60) as client,
    ):
        yield SecuredFleet(
            listener=listener,
            infra=secured,
            settings=settings,
            client=client,
            **chats,
        )


# The SDK client.


async def test_the_sdk_with_a_private_reply_topic(fleet: SecuredFleet) -> None:
    async with fleet.infra.client(namespace=fleet.namespace) as client:
        answer = await client.generate(f"hello over {fleet.listener}", model="echo-model")
        private = reply_topic(client.client_id, fleet.namespace)
        assert client.reply_address.topic == private
        assert private in await topic_names(fleet.infra)  # the client made it through the listener
    assert answer.text == f"hello over {fleet.listener}"
    assert private not in await topic_names(fleet.infra)  # and deleted it on close


async def test_the_sdk_with_a_shared_reply_topic(fleet: SecuredFleet) -> None:
    shared = shared_reply_topic("secured", fleet.namespace)
    await ensure_topics(fleet.infra.connection, {shared: 1})  # the operator, beforehand
    async with (
        fleet.infra.client(namespace=fleet.namespace, tenant="a", reply_topic=shared) as first,
        fleet.infra.client(namespace=fleet.namespace, tenant="b", reply_topic=shared) as second,
    ):
        answers = await asyncio.gather(
            first.generate("to the first", model="echo-model", request_id="same"),
            second.generate("to the second", model="echo-model", request_id="same"),
        )
        own = {reply_topic(c.client_id, fleet.namespace) for c in (first, second)}
    assert [a.text for a in answers] == ["to the first", "to the second"]
    assert not own & await topic_names(fleet.infra)


@pytest.mark.parametrize("fleet", ["sasl_ssl"], indirect=True)  # a SASL listener's subject
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_the_other_sasl_mechanisms_reach_the_same_workers(
    fleet: SecuredFleet, mechanism: Literal["PLAIN", "SCRAM-SHA-256"]
) -> None:
    """The broker's SASL_SSL listener takes every mechanism: a client logging in with PLAIN
    or SCRAM-SHA-256 is served by the workers that logged in with SCRAM-SHA-512."""
    listeners = local_secured_listeners()
    other = Infra(listeners.sasl_ssl, fleet.infra.redis_url, listeners.sasl(mechanism))
    async with other.client(namespace=fleet.namespace) as client:
        answer = await client.generate(f"logged in with {mechanism}", model="echo-model")
    assert answer.text == f"logged in with {mechanism}"


# The workers, one test per kind.


async def test_an_embed_worker(fleet: SecuredFleet) -> None:
    texts = ["The cat sat on the mat.", "A cat was sitting on a rug.", "Revenue grew."]
    result = await fleet.client.embed(texts, model=EMBED_MODEL)
    assert result.dimension == 384
    a, b, c = result.vectors

    def cosine(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert cosine(a, b) > cosine(a, c) + 0.2  # the real model answered


async def test_a_transcribe_worker(fleet: SecuredFleet) -> None:
    result = await fleet.client.transcribe(SPEECH.read_bytes(), model=WHISPER_MODEL)
    heard = result.text.lower()
    assert all(word in heard for word in ("kafka", "jobs", "workers")), result.text


async def test_a_vectors_worker(fleet: SecuredFleet) -> None:
    # Collections are the tenant's, not the namespace's: a name of this test's own.
    collection = f"secured_{uuid.uuid4().hex[:8]}"
    records = [
        VectorRecord(id="north", vector=[0.0, 1.0]),
        VectorRecord(id="east", vector=[1.0, 0.0]),
    ]
    done = await fleet.client.upsert(collection, records)
    found = await fleet.client.query(collection, vector=[0.6, 0.8], top_k=2)
    assert done.upserted == 2
    assert found.matches is not None
    assert [m.id for m in found.matches] == ["north", "east"]


async def test_the_retry_forwarder(fleet: SecuredFleet) -> None:
    """The first attempt fails retryably: the job goes to the retry topic, and the worker's
    forwarder (a consumer and producer of its own) brings it back to answer."""
    fleet.flaky.failures.append(ErrorCode.PROVIDER_DOWN)
    calls = fleet.flaky.calls
    answer = await fleet.client.generate("try again", model="flaky-model")
    assert answer.text == "Hello, world"
    assert answer.attempt == 1  # redelivered once
    assert fleet.flaky.calls == calls + 2


async def test_the_control_listener(fleet: SecuredFleet) -> None:
    """A caller that leaves a stream sends a cancel on the control topic; the worker's
    control listener (a consumer of its own) stops the running job."""
    cancelled = fleet.slow.cancelled
    stream = fleet.client.stream_generate("talk", model="slow-model")
    async with contextlib.aclosing(stream):
        async for event in stream:
            if isinstance(event, TextDelta) and event.seq == 2:
                break
    await until(lambda: fleet.slow.cancelled == cancelled + 1)  # long before its 10 s


async def test_the_batch_coordinator_and_batch_client(fleet: SecuredFleet, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows = {f"row-{i}": f"Sentence {i} about the harbour." for i in range(5)}
    corpus.write_text(
        "".join(json.dumps({"custom_id": i, "text": t}) + "\n" for i, t in rows.items())
    )
    async with BatchClient(fleet.infra.connection, namespace=fleet.namespace) as batches:
        info = await batches.submit(corpus, model=EMBED_MODEL)
        final = await batches.follow(info.id, timeout_s=60)
        output = tmp_path / "out.jsonl"
        written = await batches.results(info.id, output, tmp_path / "errors.jsonl")
    assert final.status == "completed", final
    assert (written.succeeded, written.failed) == (5, 0)
    results = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["custom_id"] for r in results) == sorted(rows)
    for row in results:
        (item,) = row["response"]["body"]["data"]
        assert math.isclose(math.hypot(*item["embedding"]), 1.0, abs_tol=1e-3)


# The `fleet` commands that open Kafka clients, run in-process with FLEET_* variables alone.


@contextlib.contextmanager
def _logging_left_as_it_was() -> Iterator[None]:
    """``fleet``'s main sets up logging for a process of its own (a repeat filter on the
    root handlers, quieter client libraries); the rest of the suite keeps its own."""
    root = logging.getLogger()
    filters = {handler: list(handler.filters) for handler in root.handlers}
    levels = {name: logging.getLogger(name).level for name in ("aiokafka", "httpx")}
    try:
        yield
    finally:
        for handler, kept in filters.items():
            handler.filters[:] = kept
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def _fleet_command(
    fleet: SecuredFleet,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
) -> str:
    """``fleet ARGS`` as an operator on the secured cluster runs it; its stdout."""
    for name in SECURITY_ENV:  # nothing of the environment the suite runs in
        monkeypatch.delenv(name, raising=False)
    env = {
        **fleet.infra.kafka_env(),
        "FLEET_REDIS_URL": fleet.infra.redis_url,
        "FLEET_NAMESPACE": fleet.namespace,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    with _logging_left_as_it_was():
        # The command runs its own event loop (asyncio.run): a thread of its own.
        code = await asyncio.to_thread(fleet_main, list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


async def test_fleet_janitor(
    fleet: SecuredFleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = reply_topic(f"died-{uuid.uuid4().hex[:6]}", fleet.namespace)
    await ensure_topics(fleet.infra.connection, {dead: 1})
    producer = AIOKafkaProducer(**fleet.infra.kafka_options())
    await producer.start()
    try:  # its client's last heartbeat, two hours ago
        await producer.send_and_wait(dead, b"", timestamp_ms=int((time.time() - 7200) * 1000))
    finally:
        await producer.stop()
    out = await _fleet_command(fleet, monkeypatch, capsys, "janitor", "--older-than", "600")
    assert f"{dead}: silent" in out
    assert "deleted 1 reply topic(s)" in out
    left = await topic_names(fleet.infra)
    assert dead not in left
    assert fleet.client.reply_address.topic in left  # a live client's stays


async def test_fleet_dlq_list(
    fleet: SecuredFleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    request_id = f"broken-{uuid.uuid4().hex[:6]}"
    with pytest.raises(FleetRequestError) as failed:
        await fleet.client.generate("hi", model="broken-model", request_id=request_id)
    assert failed.value.code is ErrorCode.PROVIDER_DOWN
    dead = await read_dead_letters(fleet.infra, fleet.namespace, expected=1)
    assert dead, "the job that failed for good was not dead-lettered"
    out = await _fleet_command(
        fleet, monkeypatch, capsys, "dlq", "list", "generate", "--json",
        "--reason", "retries_exhausted",
    )  # fmt: skip
    *records, _summary = [json.loads(line) for line in out.splitlines()]
    mine = [r for r in records if r["request_id"] == request_id]
    assert len(mine) == 1, out
    assert mine[0]["source_topic"] == request_topic("generate", fleet.namespace)


async def test_fleet_lag_and_status(
    fleet: SecuredFleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fleet lag` reads the groups' offsets from the cluster; `fleet status` reads only
    Redis, but loads the same secured settings from the environment."""
    request_id = f"inspect-{uuid.uuid4().hex[:6]}"
    await fleet.client.generate("look at me", model="echo-model", request_id=request_id)
    lag = await _fleet_command(fleet, monkeypatch, capsys, "lag")
    rows = [line.split() for line in lag.splitlines()[1:]]
    groups = {(row[0], row[1]): row[-1] for row in rows}
    for kind in ("generate", "embed", "transcribe", "vectors"):
        assert groups.get((kind, "interactive")) == fleet.settings.group_for(kind), lag
    status = await _fleet_command(fleet, monkeypatch, capsys, "status", request_id)
    assert status.startswith(f"{request_id}: done"), status
