"""`submit_corpus` / `fleet embed-corpus`: a thin wrapper over a batch the fleet owns
(submit, follow, download), resumable by running it again, clear about bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from contracts import ContractError
from contracts.batch import BatchInfo
from producer_sdk import BatchClient, FleetClient
from tests.conftest import Infra
from tests.integration.test_batches import coordinator, gated_worker, wait_for_rows
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
    seen: list[BatchInfo] = []
    async with worker_of("embed", settings), coordinator(settings):
        final = await client.submit_corpus(
            corpus, tmp_path / "out.jsonl", model=EMBED_MODEL, progress=seen.append
        )
    assert final.status == "completed"
    counts = final.request_counts
    assert (counts.total, counts.completed, counts.failed) == (300, 300, 0)
    results = _results(tmp_path / "out.jsonl")
    assert set(results) == {f"row-{i}" for i in range(300)}
    embedding = results["row-5"]["embedding"]
    assert isinstance(embedding, list)
    assert len(embedding) == 384
    done = [p.request_counts.done for p in seen]
    assert done == sorted(done)
    assert done[-1] == 300


async def test_an_interrupted_corpus_command_picks_up_the_batch_the_fleet_kept(
    infra: Infra, namespace: str, settings: WorkerSettings, client: FleetClient, tmp_path: Path
) -> None:
    corpus = _corpus(tmp_path / "in.jsonl", 600)
    out = tmp_path / "out.jsonl"
    # The worker runs one of the batch's three requests and holds the others at its gate
    # until the client has gone: otherwise a fast machine ends the batch (and the client
    # downloads it) before the client is interrupted.
    async with gated_worker("embed", settings, passing=1) as gate, coordinator(settings):
        first = asyncio.create_task(client.submit_corpus(corpus, out, model=EMBED_MODEL))
        async with BatchClient(infra.connection, namespace=namespace) as batches:
            for _ in range(600):
                listed = await batches.list()
                if listed:
                    break
                await asyncio.sleep(0.1)
            (batch,) = listed
            running = await wait_for_rows(batches, batch.id, 50)
        assert running.status == "in_progress", running
        first.cancel()  # the client goes away (Ctrl-C); the batch goes on in the fleet
        with pytest.raises(asyncio.CancelledError):
            await first
        assert not out.exists()
        gate.open()
        final = await client.submit_corpus(corpus, out, model=EMBED_MODEL)
        async with BatchClient(infra.connection, namespace=namespace) as batches:
            assert [b.id for b in await batches.list()] == [batch.id], "submitted once"
    assert final.id == batch.id
    assert final.request_counts.completed == 600
    assert set(_results(out)) == {f"row-{i}" for i in range(600)}


async def test_a_bad_corpus_line_is_named(client: FleetClient, tmp_path: Path) -> None:
    corpus = tmp_path / "in.jsonl"
    corpus.write_text('{"custom_id": "a", "text": "ok"}\n{"custom_id": "b"}\n')
    with pytest.raises(ContractError, match=r"in\.jsonl:2: .*text"):
        await client.submit_corpus(corpus, tmp_path / "out.jsonl", model=EMBED_MODEL)
