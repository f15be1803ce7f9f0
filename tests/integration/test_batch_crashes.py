"""A batch survives ``kill -9`` of its coordinator and of an embed worker mid-batch: the
result is complete and holds no row twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer_sdk import BatchClient
from tests.conftest import Infra
from tests.integration.test_batches import read_jsonl, wait_for_rows, write_corpus
from tests.integration.test_categories_e2e import EMBED_MODEL
from tests.integration.worker_processes import WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model, pytest.mark.slow]

# Three model processes on two cores at most: one thread each.
CONFIG = """
partitions = 2
session_timeout_ms = 6000
lock_ttl_s = 3.0

[[embeddings]]
name = "local-minilm"
config = { threads = 1 }

[batch]
max_in_flight = 4
embed_chunk_rows = 64
status_interval_s = 0.2
"""
# Two pages of 512 rows cut into 16 requests of 64 (4 in flight): the same 16 requests as
# 4,000 rows in requests of 256, so the kill still finds requests in flight at both
# processes and most of them not yet sent, for a quarter of the model time. The status is
# published every 0.2 s so that the kill lands soon after a fifth of the rows is done.
ROWS = 1_024


async def test_kill_9_of_the_coordinator_and_an_embed_worker_mid_batch(
    infra: Infra, namespace: str, tmp_path: Path
) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(CONFIG)
    processes: list[WorkerProcess] = []

    def start(kind: str) -> WorkerProcess:
        log = tmp_path / f"{kind}-{len(processes)}.log"
        process = WorkerProcess(kind, infra, namespace, config, log)
        processes.append(process)
        return process

    corpus = write_corpus(tmp_path / "corpus.jsonl", ROWS)
    try:
        first, doomed, survivor = start("batch"), start("embed"), start("embed")
        for process in (first, doomed, survivor):
            await process.wait_ready()
        async with BatchClient(infra.connection, namespace=namespace) as batches:
            info = await batches.submit(corpus, model=EMBED_MODEL)
            await wait_for_rows(batches, info.id, ROWS // 5)
            first.kill()
            doomed.kill()
            before = (await batches.status(info.id)).request_counts.done
            assert before < ROWS, "the batch ended before the kill: make it longer"
            second = start("batch")
            await second.wait_ready()
            final = await batches.follow(info.id, timeout_s=600)
            assert final.status == "completed", final
            assert (final.request_counts.completed, final.request_counts.failed) == (ROWS, 0)
            output, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
            written = await batches.results(info.id, output, errors)
    finally:
        for process in processes:
            process.ensure_stopped()
    ids = [str(row["custom_id"]) for row in read_jsonl(output)]
    assert len(ids) == len(set(ids)) == ROWS == written.succeeded
    assert read_jsonl(errors) == []
    resumed = (tmp_path / "batch-3.log").read_text()
    assert info.id in resumed, "the second coordinator resumed the batch"
    assert json.loads(output.read_text().splitlines()[0])["response"]["status_code"] == 200
