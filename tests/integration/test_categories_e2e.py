"""Embed, transcribe and vectors jobs end to end with their real local providers."""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import numpy as np
import pytest

from contracts import ErrorCode, TranscribeResult, TranscriptSegment, VectorRecord
from producer_sdk import FleetClient, FleetRequestError
from tests.conftest import Infra
from tests.integration.harness import serving
from workers import Worker, WorkerSettings, build_worker
from workers.settings import ReplyLimits

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]

EMBED_MODEL = "all-minilm-l6-v2"
WHISPER_MODEL = "whisper-tiny.en"


@asynccontextmanager
async def worker_of(kind: str, settings: WorkerSettings) -> AsyncIterator[Worker]:
    async with serving(await build_worker(kind, settings)) as worker:
        yield worker


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embed_returns_normalised_vectors_that_know_paraphrases(
    settings: WorkerSettings, client: FleetClient
) -> None:
    texts = [
        "The cat sat on the mat.",
        "A cat was sitting on a rug.",
        "Quarterly revenue grew by eight percent.",
    ]
    async with worker_of("embed", settings):
        result = await client.embed(texts, model=EMBED_MODEL, custom_ids=["a", "b", "c"])
    assert result.dimension == 384
    assert len(result.vectors) == 3
    assert result.custom_ids == ["a", "b", "c"]
    for vector in result.vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-3)
    a, b, c = result.vectors
    assert _cosine(a, b) > _cosine(a, c) + 0.2


async def test_concurrent_embed_requests_share_model_batches(
    settings: WorkerSettings, client: FleetClient
) -> None:
    requests = 24
    async with worker_of("embed", settings) as worker:
        results = await asyncio.gather(
            *(
                client.embed([f"sentence number {i}", f"another line {i}"], model=EMBED_MODEL)
                for i in range(requests)
            )
        )
        batches = worker.metrics.registry.get_sample_value(
            "fleet_batch_size_count", {"kind": "embed"}
        )
        texts = worker.metrics.registry.get_sample_value("fleet_batch_size_sum", {"kind": "embed"})
    assert all(len(r.vectors) == 2 for r in results)
    assert texts == 2 * requests
    assert batches is not None
    assert batches < requests, "texts of concurrent requests should share model calls"
    # Each request got its own vectors back, not a neighbour's.
    single = await _embed_alone(settings, client, "sentence number 7")
    assert _cosine(results[7].vectors[0], single) > 0.999


async def _embed_alone(settings: WorkerSettings, client: FleetClient, text: str) -> list[float]:
    async with worker_of("embed", settings):
        return (await client.embed(text, model=EMBED_MODEL)).vectors[0]


async def test_unknown_embedding_model_is_a_clear_error(
    settings: WorkerSettings, client: FleetClient
) -> None:
    async with worker_of("embed", settings):
        with pytest.raises(FleetRequestError) as info:
            await client.embed("hi", model="text-embedding-9")
    assert info.value.code is ErrorCode.NOT_FOUND
    assert EMBED_MODEL in str(info.value)


async def test_an_embed_reply_over_one_message_arrives_whole_in_parts(
    settings: WorkerSettings, client: FleetClient
) -> None:
    texts = [f"short text number {i}" for i in range(1000)]  # 1.5 MB of float32 vectors
    async with worker_of("embed", settings):
        result = await client.embed(texts, model=EMBED_MODEL, timeout_s=60)
        [alone] = (await client.embed(texts[999], model=EMBED_MODEL)).vectors
    assert result.vectors_float32 is not None
    assert len(result.vectors_float32) > 1024 * 1024
    assert len(result.vectors) == 1000
    assert result.dimension == 384
    assert np.allclose(result.vectors[999], alone, atol=1e-6)
    matrix = np.frombuffer(result.vectors_float32, "<f4").reshape(-1, result.dimension)
    assert np.allclose(matrix, np.asarray(result.vectors, dtype=np.float32))


async def test_an_embed_reply_over_the_configured_bound_is_a_typed_error_at_once(
    settings: WorkerSettings, client: FleetClient
) -> None:
    settings = msgspec.structs.replace(settings, replies=ReplyLimits(max_bytes=100_000))
    texts = [f"short text number {i}" for i in range(100)]  # 154 kB of vectors
    async with worker_of("embed", settings):
        with pytest.raises(FleetRequestError) as info:
            await client.embed(texts, model=EMBED_MODEL, timeout_s=60)
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert "replies.max_bytes = 100000" in str(info.value)
        # The caller's reply topic still works: its next request is answered.
        assert len((await client.embed("one text", model=EMBED_MODEL)).vectors) == 1


async def test_embed_dimensions_shorten_the_vectors(
    settings: WorkerSettings, client: FleetClient
) -> None:
    async with worker_of("embed", settings):
        full = await client.embed("Kafka is a log", model=EMBED_MODEL)
        short = await client.embed("Kafka is a log", model=EMBED_MODEL, dimensions=64)
        with pytest.raises(FleetRequestError) as info:
            await client.embed("Kafka is a log", model=EMBED_MODEL, dimensions=4096)
    assert short.dimension == 64
    [vector] = short.vectors
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    head = np.asarray(full.vectors[0][:64])
    assert np.allclose(vector, head / np.linalg.norm(head), atol=1e-5)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "makes vectors of 384" in str(info.value)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="run deploy/local/system-packages.sh")
async def test_transcribe_streams_segments_of_real_speech(
    settings: WorkerSettings, client: FleetClient, tmp_path: Path
) -> None:
    wav = tmp_path / "speech.wav"
    sentence = "The quick brown fox jumps over the lazy dog. Kafka carries the jobs."
    await asyncio.to_thread(
        subprocess.run, ["espeak-ng", "-w", str(wav), sentence], check=True, capture_output=True
    )
    async with worker_of("transcribe", settings):
        events = [e async for e in client.stream_transcribe(wav.read_bytes(), model=WHISPER_MODEL)]
    segments = [e for e in events if isinstance(e, TranscriptSegment)]
    final = events[-1]
    assert isinstance(final, TranscribeResult)
    assert segments, "segments stream before the result"
    assert [s.seq for s in segments] == list(range(len(segments)))
    words = final.text.lower()
    for word in ("quick", "fox", "lazy", "dog", "jobs"):
        assert word in words
    assert final.duration_s is not None
    assert final.duration_s > 2


async def test_transcribe_refuses_paths_outside_the_audio_roots(
    settings: WorkerSettings, client: FleetClient
) -> None:
    async with worker_of("transcribe", settings):
        with pytest.raises(FleetRequestError) as info:
            await client.transcribe(model=WHISPER_MODEL, audio_url="/etc/passwd")
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "outside the allowed audio roots" in str(info.value)


async def test_vectors_upsert_texts_query_filter_and_delete(
    settings: WorkerSettings, client: FleetClient
) -> None:
    collection = f"docs_{uuid.uuid4().hex[:8]}"
    delete_id = f"delete-{collection}"
    records = [
        VectorRecord(id="kafka", text="Kafka is a distributed event log.", metadata={"lang": "en"}),
        VectorRecord(id="redis", text="Redis is an in-memory data store.", metadata={"lang": "en"}),
        VectorRecord(id="chat", text="Le chat dort sur le canapé.", metadata={"lang": "fr"}),
    ]
    async with worker_of("vectors", settings):
        upserted = await client.upsert(collection, records)
        hits = await client.query(collection, text="an append-only log of events", top_k=2)
        french = await client.query(
            collection, text="an append-only log of events", top_k=3, filter={"lang": "fr"}
        )
        deleted = await client.delete(collection, ["kafka", "missing"], request_id=delete_id)
        # The same request id again is answered from the ledger: what the first one did.
        resent = await client.delete(collection, ["kafka", "missing"], request_id=delete_id)
        fresh = await client.delete(collection, ["kafka", "missing"])
        after = await client.query(collection, text="an append-only log of events", top_k=3)
    assert upserted.upserted == 3
    assert hits.matches is not None
    assert hits.matches[0].id == "kafka"
    assert french.matches is not None
    assert [m.id for m in french.matches] == ["chat"]
    assert deleted.deleted == 1
    assert resent.deleted == 1
    assert fresh.deleted == 0
    assert after.matches is not None
    assert "kafka" not in [m.id for m in after.matches]


async def test_vector_collections_are_namespaced_by_tenant(
    settings: WorkerSettings, infra: Infra
) -> None:
    collection = f"shared_name_{uuid.uuid4().hex[:8]}"
    probe = [1.0, 0.0, 0.0]

    def client(tenant: str) -> FleetClient:
        return infra.client(namespace=settings.namespace, tenant=tenant)

    async def ids(fleet: FleetClient) -> list[str]:
        return [m.id for m in (await fleet.query(collection, vector=probe)).matches or []]

    async with worker_of("vectors", settings), client("acme") as acme, client("globex") as globex:
        await acme.upsert(collection, [VectorRecord(id="secret", vector=probe)])
        assert await ids(acme) == ["secret"]
        # Same collection name, another tenant: no such collection to read or delete from.
        with pytest.raises(FleetRequestError) as info:
            await ids(globex)
        assert info.value.code is ErrorCode.NOT_FOUND
        deleted = await globex.delete(collection, ["secret"])
        assert not deleted.deleted
        assert await ids(acme) == ["secret"]
