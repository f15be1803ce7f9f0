"""Rerank jobs end to end through Kafka, Redis and a rerank worker with the local MiniLM
bi-encoder: the relevant document ranks first, hostile requests are refused by name while
the worker goes on serving, the gateway's `POST /v1/rerank` answers Cohere's v2 and
Jina's v1 shapes, and a batch file of `/v1/rerank` rows runs through the coordinator."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest

from contracts import DeadLetterReason, ErrorCode, Header
from contracts.secrets import Secret
from gateway import Gateway
from producer_sdk import BatchClient, FleetClient, FleetRequestError
from tests.conftest import Infra
from tests.integration.harness import read_dead_letters, serving
from tests.integration.test_batches import coordinator, read_jsonl
from workers import WorkerSettings, build_worker
from workers.ops.cli import main

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]

MODEL = "all-minilm-l6-v2-biencoder"
# Ten documents on ten topics, and for each a question it answers in other words.
DOCUMENTS = [
    "Apache Kafka stores streams of events in partitioned, append-only logs.",
    "Sourdough bread rises slowly because wild yeast ferments the dough.",
    "The heart pumps blood through arteries and veins around the body.",
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "A mortgage is a loan used to buy a house, repaid with interest over years.",
    "Volcanoes erupt when molten rock rises through cracks in the Earth's crust.",
    "The offside rule in football stops attackers from waiting behind the defenders.",
    "Jupiter is the largest planet in the solar system, a gas giant with many moons.",
    "Regular brushing and flossing prevent tooth decay and gum disease.",
    "The French Revolution began in 1789 and overthrew the monarchy.",
]
QUERIES = [
    "Which system keeps a durable log of messages?",
    "Why does naturally leavened dough take so long to rise?",
    "How does blood circulate in the human body?",
    "How do green plants make their food from light?",
    "What kind of loan do people take out to purchase a home?",
    "What makes lava come out of a mountain?",
    "When is a soccer player caught offside?",
    "What is the biggest planet orbiting the Sun?",
    "How can I keep my teeth healthy?",
    "When did the revolution in France start?",
]


async def test_rerank_ranks_the_relevant_document_first_and_refuses_hostile_requests(
    infra: Infra,
    settings: WorkerSettings,
    client: FleetClient,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    api_key = "sk-rerank-" + uuid.uuid4().hex
    gateway = Gateway(
        infra.connection,
        namespace=namespace,
        api_keys={"acme": Secret(api_key)},
        tenant_keys={},
        models={MODEL: "rerank", "all-minilm-l6-v2": "embed"},
        port=0,
    )
    async with serving(await build_worker("rerank", settings)), gateway.running():
        async with httpx.AsyncClient(
            base_url=f"http://{gateway.host}:{gateway.port}/v1",
            headers={"authorization": f"Bearer {api_key}"},
        ) as http:
            # Cohere v2: strings, top_n, max_tokens_per_doc; Jina v1: objects, documents back.
            cohere = await http.post(
                "/rerank",
                json={"model": MODEL, "query": QUERIES[3], "documents": DOCUMENTS,
                      "top_n": 3, "max_tokens_per_doc": 32},
            )  # fmt: skip
            jina = await http.post(
                "/rerank",
                json={"model": MODEL, "query": QUERIES[5], "return_documents": True,
                      "documents": [{"text": d} for d in DOCUMENTS[4:7]]},
            )  # fmt: skip
            refusals = [
                await http.post("/rerank", json={"model": MODEL, "query": "q", "documents": []}),
                await http.post("/rerank", json={"model": "all-minilm-l6-v2", "query": "q",
                                                 "documents": ["d"]}),
            ]  # fmt: skip
        rows = tmp_path / "rerank.jsonl"
        rows.write_text(
            "".join(
                json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/rerank",
                            "body": {"model": MODEL, "query": QUERIES[i], "documents": DOCUMENTS,
                                     "top_n": 1}}) + "\n"
                for i in (2, 8)
            )
        )  # fmt: skip
        async with coordinator(settings), BatchClient(infra.connection, namespace=namespace) as b:
            batch = await b.submit(rows)
            final = await b.follow(batch.id, timeout_s=120)
            await b.results(batch.id, tmp_path / "out.jsonl")
        answers = await asyncio.gather(
            *(client.rerank(query, DOCUMENTS, model=MODEL) for query in QUERIES)
        )
        hostile = {
            "empty documents": client.rerank("q", [], model=MODEL),
            "10,000 documents": client.rerank("q", ["doc"] * 10_000, model=MODEL),
            "a 100 kB query": client.rerank("q" * 100_000, ["doc"], model=MODEL),
        }
        refused: dict[str, str] = {}
        for name, call in hostile.items():
            with pytest.raises(FleetRequestError) as info:
                await call
            assert info.value.code is ErrorCode.INVALID_INPUT, name
            refused[name] = str(info.value)
        # Still serving: a request after them is answered, in full; `fleet rerank` too.
        after = await client.rerank(
            QUERIES[0], DOCUMENTS, model=MODEL, top_n=2, return_documents=True
        )
        for name, value in {**infra.kafka_env(), "FLEET_NAMESPACE": namespace}.items():
            monkeypatch.setenv(name, value)
        command = ["rerank", QUERIES[7], *DOCUMENTS[6:], "--top-n", "1"]
        assert await asyncio.to_thread(main, command) == 0
    assert cohere.status_code == 200, cohere.text
    ranked = cohere.json()
    assert len(ranked["results"]) == 3
    assert ranked["results"][0]["index"] == 3
    assert "document" not in ranked["results"][0]
    assert ranked["model"] == MODEL
    assert ranked["usage"]["total_tokens"] > 0
    assert jina.status_code == 200, jina.text
    best = jina.json()["results"][0]
    assert (best["index"], best["document"]) == (1, {"text": DOCUMENTS[5]})
    assert final.status == "completed", final
    batch_rows = {row["custom_id"]: row["response"] for row in read_jsonl(tmp_path / "out.jsonl")}
    assert {i: r["body"]["results"][0]["index"] for i, r in batch_rows.items()} == {  # type: ignore[index]
        "q2": 2,
        "q8": 8,
    }
    assert [r.status_code for r in refusals] == [400, 404]
    assert refusals[0].json()["error"]["param"] == "documents"
    assert refusals[1].json()["error"]["code"] == "model_not_found"
    firsts = [answer.results[0].index for answer in answers]
    assert sum(first == i for i, first in enumerate(firsts)) >= 9, firsts
    for answer in answers:
        assert sorted(r.index for r in answer.results) == list(range(len(DOCUMENTS)))
        scores = [r.relevance_score for r in answer.results]
        assert scores == sorted(scores, reverse=True)
        assert answer.usage.prompt_tokens > 0
    assert "length >= 1" in refused["empty documents"]
    assert "rerank_limits.max_documents" in refused["10,000 documents"]
    assert "rerank_limits.max_query_chars" in refused["a 100 kB query"]
    assert capsys.readouterr().out.split("  ", 1)[1] == DOCUMENTS[7] + "\n"
    assert len(after.results) == 2
    assert (after.results[0].index, after.results[0].document) == (0, DOCUMENTS[0])
    # The one that broke the contract is dead-lettered; the ones over the limits only
    # answered (the caller's to fix, as any invalid_input of a provider).
    [dead] = await read_dead_letters(infra, namespace, 1, kind="rerank")
    headers = dict(dead.headers)
    assert headers[Header.DLQ_REASON].decode() == DeadLetterReason.SCHEMA
