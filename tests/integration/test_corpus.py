"""Corpus embedding jobs through the embed worker: complete, resumable, clear about bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from contracts import ContractError
from producer_sdk import CorpusProgress, FleetClient
from tests.integration.test_categories_e2e import EMBED_MODEL, worker_of
from workers import WorkerSettings

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]


def _corpus(path: Path, rows: int) -> Path:
    lines = (
        json.dumps({"custom_id": f"row-{i}", "text": f"Sentence {i} about topic {i % 7}."})
        for i in range(rows)
    )
    path.write_text("\n".join(lines) + "\n")
    return path


def _results(path: Path) -> dict[str, dict[str, object]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by_id = {row["custom_id"]: row for row in rows}
    assert len(by_id) == len(rows), "every custom_id appears once"
    return by_id


async def test_a_corpus_is_embedded_and_joined_by_custom_id(
    settings: WorkerSettings, client: FleetClient, tmp_path: Path
) -> None:
    corpus = _corpus(tmp_path / "in.jsonl", 300)
    seen: list[CorpusProgress] = []
    async with worker_of("embed", settings):
        final = await client.submit_corpus(
            corpus, tmp_path / "out.jsonl", model=EMBED_MODEL, chunk_size=32, progress=seen.append
        )
    assert final.status == "completed"
    assert (final.total, final.succeeded, final.failed) == (300, 300, 0)
    results = _results(tmp_path / "out.jsonl")
    assert set(results) == {f"row-{i}" for i in range(300)}
    embedding = results["row-5"]["embedding"]
    assert isinstance(embedding, list)
    assert len(embedding) == 384
    done = [p.done for p in seen]
    assert done == sorted(done)
    assert done[-1] == 300


async def test_a_cancelled_corpus_resumes_without_redoing_rows(
    settings: WorkerSettings, client: FleetClient, tmp_path: Path
) -> None:
    corpus = _corpus(tmp_path / "in.jsonl", 400)
    out = tmp_path / "out.jsonl"
    async with worker_of("embed", settings):
        enough = asyncio.Event()

        def watch(progress: CorpusProgress) -> None:
            if progress.done >= 50:
                enough.set()

        first = asyncio.create_task(
            client.submit_corpus(
                corpus, out, model=EMBED_MODEL, chunk_size=16, max_in_flight=2, progress=watch
            )
        )
        await asyncio.wait_for(enough.wait(), timeout=60)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        partial = len(_results(out))
        assert 50 <= partial < 400
        final = await client.submit_corpus(corpus, out, model=EMBED_MODEL, chunk_size=16)
    assert final.status == "completed"
    assert final.succeeded == 400
    assert set(_results(out)) == {f"row-{i}" for i in range(400)}


async def test_a_bad_corpus_line_is_named(client: FleetClient, tmp_path: Path) -> None:
    corpus = tmp_path / "in.jsonl"
    corpus.write_text('{"custom_id": "a", "text": "ok"}\n{"custom_id": "b"}\n')
    with pytest.raises(ContractError, match=r"in\.jsonl:2: .*text"):
        await client.submit_corpus(corpus, tmp_path / "out.jsonl", model=EMBED_MODEL)
