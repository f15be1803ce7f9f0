"""Batch jobs the fleet owns, end to end: real Kafka, Redis, the local embedding model and
the batch coordinator. The submitting client goes away; the results are complete, every
custom_id once; cancel, expiry and retry keep what was done."""

from __future__ import annotations

import asyncio
import json
import math
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from contracts.batch import BatchCancel, BatchCommand, BatchInfo
from contracts.codec import encode
from contracts.errors import ErrorCode
from contracts.names import (
    Header,
    Lane,
    batch_command_topic,
    batch_dead_letter_topic,
    batch_input_topic,
)
from contracts.replies import ReplyChunk
from contracts.secrets import Secret
from contracts.signing import sign
from producer_sdk import BatchClient, FleetClient, FleetRequestError
from producer_sdk.batches import BatchNotFound
from tests.conftest import REPO, Infra
from tests.integration.harness import serving, until
from tests.integration.test_categories_e2e import EMBED_MODEL, worker_of
from transport.connection import start_client
from transport.records import Record
from transport.topic_admin import delete_topics
from transport.topic_reader import TopicMissing, read_to_end
from workers import WorkerSettings, build_worker
from workers.batch.coordinator import BatchCoordinator
from workers.handlers.base import JobHandler
from workers.handlers.reply_stream import ChunkStamper
from workers.settings import BatchSettings

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]

# Rows of the batch a client submits and leaves: 2 input pages of 512, cut by its
# coordinator into 16 requests of LARGE_CHUNK rows. The embed worker runs LARGE_PASSING of
# them, then holds the rest at its gate until an interactive request has been answered.
LARGE, LARGE_CHUNK, LARGE_PASSING = 1_024, 64, 4
TOPICS = ["the harbour", "a mountain pass", "quarterly revenue", "a violin concerto", "rain"]


def write_corpus(path: Path, rows: int, *, openai_shape: bool = False) -> Path:
    """Rows of varied sentences, in the short form or OpenAI's batch input shape."""
    rng = random.Random(rows)
    with path.open("w") as out:
        for i in range(rows):
            text = f"Row {i} is about {rng.choice(TOPICS)} and {rng.randint(0, 10**6)} things."
            if openai_shape:
                line = {"custom_id": f"row-{i}", "method": "POST", "url": "/v1/embeddings",
                        "body": {"model": EMBED_MODEL, "input": text}}  # fmt: skip
            else:
                line = {"custom_id": f"row-{i}", "text": text}
            out.write(json.dumps(line) + "\n")
    return path


def texts_of(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["custom_id"]: r.get("text") or r["body"]["input"] for r in rows}


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def union_ids(output: Path, errors: Path) -> list[str]:
    return [str(row["custom_id"]) for row in [*read_jsonl(output), *read_jsonl(errors)]]


async def wait_for_rows(batches: BatchClient, batch_id: str, rows: int) -> BatchInfo:
    """The batch's status once at least ``rows`` rows are done (within two minutes)."""
    for _ in range(1200):
        info = await batches.status(batch_id)
        if info.request_counts.done >= rows or info.ended:
            return info
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not reach {rows} rows in two minutes")


@asynccontextmanager
async def coordinator(settings: WorkerSettings) -> AsyncIterator[BatchCoordinator]:
    running = BatchCoordinator(settings)
    task = asyncio.create_task(running.run())
    ready = asyncio.create_task(running.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert ready in done, "the coordinator did not join its group within 60 s"
    try:
        yield running
    finally:
        running.stop()
        await asyncio.wait_for(task, timeout=60)


class BatchLaneGate:
    """A worker's handler with a gate on its batch lane: the first ``passing`` batch jobs
    run, the later ones wait at the gate until the test opens it; the interactive lane's
    jobs pass by. A batch is then certainly unfinished for as long as the test needs, on a
    machine of any speed, and its rows are still the real model's."""

    def __init__(self, inner: JobHandler[Any], *, passing: int) -> None:
        self.kind = inner.kind
        self._inner = inner
        self._passing = passing
        self._opened = asyncio.Event()
        self.held = 0  # batch jobs waiting at the gate now

    def open(self) -> None:
        self._opened.set()

    async def handle(
        self, request: Any, stamper: ChunkStamper, *, lane: Lane = "interactive"
    ) -> AsyncIterator[ReplyChunk]:
        if lane == "batch":
            if self._passing > 0:
                self._passing -= 1
            else:
                self.held += 1
                try:
                    await self._opened.wait()
                finally:
                    self.held -= 1
        async for chunk in self._inner.handle(request, stamper, lane=lane):
            yield chunk

    async def health(self) -> dict[str, bool]:
        return await self._inner.health()

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def gated_worker(
    kind: str, settings: WorkerSettings, *, passing: int
) -> AsyncIterator[BatchLaneGate]:
    """A worker of ``kind`` whose batch lane runs ``passing`` jobs and holds the rest until
    the gate opens (at the block's end at the latest, so that the worker can stop)."""
    worker = await build_worker(kind, settings)
    gate = BatchLaneGate(worker.handler, passing=passing)
    worker.handler = gate
    async with serving(worker):
        try:
            yield gate
        finally:
            gate.open()


@pytest.fixture
async def batches(infra: Infra, namespace: str) -> AsyncIterator[BatchClient]:
    async with BatchClient(infra.connection, namespace=namespace) as client:
        yield client


def fleet_command(infra: Infra, namespace: str, *args: str) -> str:
    """Run ``fleet ...`` as its own process (as a user would) and return its stdout."""
    env = {**infra.kafka_env(), "FLEET_NAMESPACE": namespace, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "workers.ops.cli", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


async def test_a_1024_row_batch_submitted_by_a_client_that_left(
    infra: Infra,
    namespace: str,
    settings: WorkerSettings,
    client: FleetClient,
    batches: BatchClient,
    tmp_path: Path,
) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", LARGE, openai_shape=True)
    # The submitting process exits right after the submit.
    submitted = json.loads(
        fleet_command(infra, namespace, "batch", "submit", str(corpus), "--json")
    )
    batch_id = submitted["id"]
    assert submitted["status"] == "validating"
    assert submitted["request_counts"]["total"] == LARGE
    # One embed worker throughout: it serves the batch, then the direct call to compare with.
    # Its batch lane runs the first requests and holds the rest until the interactive request
    # is answered: a sampled status could not say the batch was still running (a machine
    # three times faster embeds 1,024 rows within one status interval), the gate can. The
    # counts are published every 0.2 s, so the wait for the first requests' rows is short.
    chunked = msgspec.structs.replace(
        settings, batch=BatchSettings(embed_chunk_rows=LARGE_CHUNK, status_interval_s=0.2)
    )
    async with gated_worker("embed", settings, passing=LARGE_PASSING) as gate:
        async with coordinator(chunked):
            running = await wait_for_rows(batches, batch_id, LARGE_PASSING * LARGE_CHUNK)
            assert running.status == "in_progress", running
            # The batch's next requests have reached the worker and wait at its gate.
            await until(lambda: gate.held > 0)
            # An interactive request is served while the batch runs on the same worker.
            answer = await client.embed("Is anyone there?", model=EMBED_MODEL, timeout_s=60)
            assert answer.dimension == 384
            unfinished = await batches.status(batch_id)
            gate.open()
            final = await batches.follow(batch_id, timeout_s=600)
        assert unfinished.status == "in_progress", unfinished
        assert unfinished.request_counts.done == LARGE_PASSING * LARGE_CHUNK
        assert final.status == "completed"
        assert (final.request_counts.completed, final.request_counts.failed) == (LARGE, 0)
        # Another process downloads the whole result later.
        output, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
        fleet_command(infra, namespace, "batch", "results", batch_id, str(output),
                      "--errors", str(errors))  # fmt: skip
        ids = union_ids(output, errors)
        assert sorted(ids) == sorted(f"row-{i}" for i in range(LARGE))
        assert read_jsonl(errors) == []
        rows = {str(r["custom_id"]): r for r in read_jsonl(output)}
        texts = texts_of(corpus)
        sample = random.Random(7).sample(sorted(rows), 64)
        direct = await client.embed([texts[i] for i in sample], model=EMBED_MODEL)
    for custom_id, vector in zip(sample, direct.vectors, strict=True):
        response = rows[custom_id]["response"]
        assert isinstance(response, dict)
        assert response["status_code"] == 200
        (item,) = response["body"]["data"]
        assert np.allclose(item["embedding"], vector, atol=1e-5), custom_id


async def test_cancel_halfway_keeps_the_partial_results(
    settings: WorkerSettings, batches: BatchClient, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", 3_000)
    # Two requests in flight, of 256 rows: the worker runs the first two (the first input
    # page) and holds the next ones at its gate, so the cancel finds the batch running
    # however fast the machine embeds.
    slow = BatchSettings(max_in_flight=2)
    halfway = 2 * slow.embed_chunk_rows
    async with (
        gated_worker("embed", settings, passing=2),
        coordinator(msgspec.structs.replace(settings, batch=slow)),
    ):
        info = await batches.submit(corpus, model=EMBED_MODEL)
        running = await wait_for_rows(batches, info.id, halfway)
        assert running.status == "in_progress", running
        await batches.cancel(info.id)
        final = await batches.follow(info.id, timeout_s=120)
    assert final.status == "cancelled"
    assert final.cancelled_at is not None
    assert info.id in [b.id for b in await batches.list()]
    done = final.request_counts.completed
    assert done == halfway
    output, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    written = await batches.results(info.id, output, errors)
    assert written.succeeded == done
    assert sorted(union_ids(output, errors)) == sorted(f"row-{i}" for i in range(3_000))
    codes = {row["error"]["code"] for row in read_jsonl(errors)}  # type: ignore[index]
    assert codes == {"batch_cancelled"}


async def test_an_expired_batch_then_a_retry_runs_only_what_is_missing(
    settings: WorkerSettings, batches: BatchClient, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", 200)
    # No embed worker yet: nothing runs before the window closes.
    async with coordinator(settings):
        info = await batches.submit(corpus, model=EMBED_MODEL, window_s=2.0)
        expired = await batches.follow(info.id, timeout_s=60)
        assert expired.status == "expired"
        assert expired.request_counts.completed == 0
        output, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
        await batches.results(info.id, output, errors)
        assert {row["error"]["code"] for row in read_jsonl(errors)} == {"batch_expired"}  # type: ignore[index]
        async with worker_of("embed", settings):
            await batches.retry(info.id, window_s=600)
            final = await batches.follow(info.id, timeout_s=120)
    assert final.status == "completed"
    assert final.round == 1
    assert (final.request_counts.completed, final.request_counts.failed) == (200, 0)
    written = await batches.results(info.id, output, errors)
    assert (written.succeeded, written.failed) == (200, 0)
    assert sorted(union_ids(output, errors)) == sorted(f"row-{i}" for i in range(200))


async def test_an_embed_batch_into_a_collection_never_duplicates_a_point(
    settings: WorkerSettings, client: FleetClient, batches: BatchClient, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", 120)
    # Collections are the tenant's, not the namespace's: a name of this test's own.
    collection = f"docs_{uuid.uuid4().hex[:8]}"
    async with worker_of("embed", settings), worker_of("vectors", settings):
        async with coordinator(settings):
            for _ in range(2):  # the same file twice: the second upserts the same points
                info = await batches.submit(corpus, model=EMBED_MODEL, collection=collection)
                final = await batches.follow(info.id, timeout_s=120)
                assert final.status == "completed", final
        texts = texts_of(corpus)
        found = await client.query(
            collection, text=texts["row-17"], top_k=1000, embed_model=EMBED_MODEL
        )
    assert found.matches is not None
    assert sorted(m.id for m in found.matches) == sorted(texts)
    assert found.matches[0].id == "row-17"
    assert math.isclose(found.matches[0].score, 1.0, abs_tol=1e-3)


async def test_a_generate_batch_answers_every_row(
    settings: WorkerSettings, batches: BatchClient, tmp_path: Path
) -> None:
    corpus = tmp_path / "chat.jsonl"
    lines = [
        {"custom_id": f"q-{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "smollm2-135m-instruct", "max_tokens": 8, "temperature": 0,
                  "messages": [{"role": "user", "content": f"Say the number {i}."}]}}
        for i in range(4)
    ]  # fmt: skip
    corpus.write_text("".join(json.dumps(line) + "\n" for line in lines))
    async with worker_of("generate", settings), coordinator(settings):
        info = await batches.submit(corpus)
        final = await batches.follow(info.id, timeout_s=300)
    assert final.status == "completed", final
    output = tmp_path / "out.jsonl"
    await batches.results(info.id, output)
    rows = read_jsonl(output)
    assert sorted(str(r["custom_id"]) for r in rows) == [f"q-{i}" for i in range(4)]
    for row in rows:
        body = row["response"]["body"]  # type: ignore[index]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"].strip()
        assert body["usage"]["completion_tokens"] <= 8


async def test_a_batch_with_an_unknown_model_fails_every_row_with_a_reason(
    settings: WorkerSettings, batches: BatchClient, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", 10)
    async with worker_of("embed", settings), coordinator(settings):
        info = await batches.submit(corpus, model="no-such-model")
        final = await batches.follow(info.id, timeout_s=120)
    assert final.status == "completed"
    assert (final.request_counts.completed, final.request_counts.failed) == (0, 10)
    output, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    await batches.results(info.id, output, errors)
    failed = read_jsonl(errors)
    assert len(failed) == 10
    assert all(r["response"]["status_code"] == 404 for r in failed)  # type: ignore[index]


async def test_a_batch_whose_input_is_gone_fails_with_the_reason(
    infra: Infra, namespace: str, settings: WorkerSettings, batches: BatchClient, tmp_path: Path
) -> None:
    info = await batches.submit(write_corpus(tmp_path / "corpus.jsonl", 20), model=EMBED_MODEL)
    await delete_topics(infra.connection, [batch_input_topic(info.id, namespace)])
    async with coordinator(settings):
        final = await batches.follow(info.id, timeout_s=60)
    assert final.status == "failed"
    assert final.failed_at is not None
    assert final.errors is not None
    assert "lacks pages [0]" in final.errors[0]


KEYS = {"acme": "acme-batch-key", "globex": "globex-batch-key"}


async def send_command(infra: Infra, namespace: str, command: BatchCommand, key: str) -> None:
    """A batch command as any producer may write it, signed with ``key``."""
    producer = AIOKafkaProducer(**infra.connection.options())
    await start_client(producer, infra.connection)
    try:
        payload = encode(command)
        await producer.send_and_wait(
            batch_command_topic(namespace),
            payload,
            key=command.batch_id.encode(),
            headers=[(Header.TENANT_SIGNATURE, sign(key.encode(), payload))],
        )
    finally:
        await producer.stop()


async def dead_letters(infra: Infra, namespace: str, count: int) -> list[Record]:
    """The coordinators' dead letters, once there are ``count`` (within a minute)."""
    for _ in range(300):
        found: list[Record] = []
        try:
            async for record in read_to_end(infra.connection, batch_dead_letter_topic(namespace)):
                found.append(record)
        except TopicMissing:
            pass
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {count} batch dead letters in a minute")


async def test_a_batch_runs_as_its_tenant_and_is_served_to_it_only(
    infra: Infra, namespace: str, settings: WorkerSettings, tmp_path: Path
) -> None:
    keyed = msgspec.structs.replace(
        settings, tenant_keys={tenant: Secret(key) for tenant, key in KEYS.items()}
    )
    corpus = write_corpus(tmp_path / "corpus.jsonl", 20)
    collection = f"docs_{uuid.uuid4().hex[:8]}"
    connection = infra.connection

    def batch_client(tenant: str, key: str) -> BatchClient:
        return BatchClient(connection, namespace=namespace, tenant=tenant, tenant_key=key)

    def fleet_client(tenant: str, key: str) -> FleetClient:
        return infra.client(namespace=namespace, tenant=tenant, tenant_key=key)

    async with (
        batch_client("acme", KEYS["acme"]) as acme,
        batch_client("globex", KEYS["globex"]) as globex,
        coordinator(keyed),
    ):
        # No embed worker yet: the batch waits while others try to stop it (the commands of
        # one batch reach its coordinator in order: these come after the submit).
        info = await acme.submit(corpus, model=EMBED_MODEL, collection=collection)
        forged = BatchCancel(batch_id=info.id, requested_at=time.time(), tenant="acme")
        await send_command(infra, namespace, forged, KEYS["globex"])
        not_its_own = BatchCancel(batch_id=info.id, requested_at=time.time(), tenant="globex")
        await send_command(infra, namespace, not_its_own, KEYS["globex"])
        letters = await dead_letters(infra, namespace, 2)
        assert [dict(r.headers)[Header.DLQ_REASON] for r in letters] == [b"tenant_unverified"] * 2
        details = sorted(dict(r.headers)[Header.DLQ_DETAIL].decode() for r in letters)
        assert "belongs to another tenant than 'globex'" in details[0]
        assert "does not match tenant 'acme'" in details[1]
        # Rows signed as acme: workers that verify tenants run every one.
        async with worker_of("embed", keyed), worker_of("vectors", keyed):
            final = await acme.follow(info.id, timeout_s=120)
            assert final.status == "completed", final
            assert (final.request_counts.completed, final.request_counts.failed) == (20, 0)
            output = tmp_path / "out.jsonl"
            await acme.results(info.id, output)
            vector = read_jsonl(output)[0]["response"]["body"]["data"][0]["embedding"]  # type: ignore[index]
            async with fleet_client("acme", KEYS["acme"]) as fleet:
                found = await fleet.query(collection, vector=vector, top_k=100)
            assert found.matches is not None
            assert len(found.matches) == 20  # the collection is acme's
            async with fleet_client("globex", KEYS["globex"]) as fleet:
                with pytest.raises(FleetRequestError) as missing:
                    await fleet.query(collection, vector=vector)
            assert missing.value.code is ErrorCode.NOT_FOUND
            async with fleet_client("acme", KEYS["globex"]) as fleet:
                with pytest.raises(FleetRequestError) as refused:
                    await fleet.query(collection, vector=vector)
            assert refused.value.code is ErrorCode.AUTH
        # Another tenant reads nothing of the batch, and cannot cancel or retry it.
        assert info.id not in [b.id for b in await globex.list()]
        assert info.id in [b.id for b in await acme.list()]
        for attempt in (
            globex.status(info.id),
            globex.results(info.id, tmp_path / "theirs.jsonl"),
            globex.cancel(info.id),
            globex.retry(info.id),
        ):
            with pytest.raises(BatchNotFound):
                await attempt
        assert not (tmp_path / "theirs.jsonl").exists()
