"""Budgets that hold: a tenant's worst case reserved in Redis before the provider is called,
settled to the answer's cost or released, lapsed when its worker died; a job that does not
fit is answered budget_exhausted without a provider call, and the gateway answers it 429."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from contracts import ChatMessage, ErrorCode, GenerateRequest
from contracts.codec import encode
from contracts.control import CancelJob
from contracts.embed import EmbedRequest
from contracts.replies import ErrorReply, GenerateResult
from contracts.speech import SpeechRequest
from gateway.errors import fleet_error
from producer_sdk import FleetRequestError
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.redis_client import RedisClient, connect_redis
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.job_runner_harness import MODEL, REPLIES, Fixture, _record, _request
from workers.budgets import Budget, Budgets, window
from workers.handlers.reply_stream import ChunkStamper
from workers.idempotency import JobLedger
from workers.job_costs import worst_case_usd
from workers.metrics import Outcome
from workers.ops.cli import main

# $0.001 a token in and out: a request of "hi" (5 tokens estimated) with max_tokens = 10
# reserves $0.015; ScriptedChat's answer reports 1 + 3 tokens: $0.004.
MODELS = ModelCatalogue(
    [ModelEntry(name=MODEL, input_usd_per_mtok=1000.0, output_usd_per_mtok=1000.0)]
)
WORST, COST = 0.015, 0.004


@pytest.fixture
async def budgets(redis: RedisClient) -> AsyncIterator[Budgets]:
    namespace = f"unit-{uuid.uuid4().hex[:8]}"
    book = Budgets(redis, namespace, {"acme": Budget(usd=0.3)})
    yield book
    label = window("day", datetime.now(UTC)).label
    await redis.delete(*book.keys("acme", label))


def _acme(request_id: str, max_tokens: int = 10) -> bytes:
    return encode(_request(request_id, tenant="acme", max_tokens=max_tokens))


async def _standing(book: Budgets) -> tuple[float, float, int]:
    standing = await book.standing("acme")
    assert standing is not None
    return round(standing.spent_usd, 6), round(standing.reserved_usd, 6), standing.holds


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_hundred_concurrent_jobs_never_spend_past_the_budget(budgets: Budgets) -> None:
    job = Fixture(budgets=budgets, models=MODELS)

    async def one(i: int) -> None:
        for _ in range(i):  # arrivals spread out: later ones find earlier ones settled
            await asyncio.sleep(0)
        await job.runner.run(_record(_acme(f"job-{i}")))

    await asyncio.gather(*(one(i) for i in range(100)))
    finals = [
        c for c in job.publisher.replies(REPLIES) if isinstance(c, ErrorReply | GenerateResult)
    ]
    answered = [f for f in finals if isinstance(f, GenerateResult)]
    refused = [f for f in finals if isinstance(f, ErrorReply)]
    assert len(finals) == 100
    assert {f.code for f in refused} == {ErrorCode.BUDGET_EXHAUSTED}
    assert answered  # the budget let some through
    assert refused  # and bound
    assert job.chat.calls == len(answered)  # a refused job never reached the provider
    spent, reserved, holds = await _standing(budgets)
    assert spent == pytest.approx(COST * len(answered))  # settled to the answers' cost
    assert spent <= 0.3 + WORST
    assert (reserved, holds) == (0, 0)
    # The tenant's spend metric counts what the answers cost, as the budget settled it.
    counted = job.metrics.registry.get_sample_value(
        "fleet_tenant_spend_usd_total", {"kind": "generate", "tenant": "acme"}
    )
    assert counted == pytest.approx(spent)
    assert job.dead_letters() == []  # answered, not a fleet fault
    assert job.count(Outcome.RETRIED) == 0


@pytest.mark.redis
async def test_a_job_that_does_not_fit_is_answered_without_a_provider_call(
    budgets: Budgets,
) -> None:
    job = Fixture(budgets=budgets, models=MODELS)
    await job.runner.run(_record(_acme("too-big", max_tokens=400)))  # $0.405 at worst
    (final,) = job.publisher.replies(REPLIES)
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.BUDGET_EXHAUSTED
    assert "acme" in final.message
    assert job.chat.calls == 0
    assert job.count(Outcome.ERROR) == 1
    assert (job.dead_letters(), await _standing(budgets)) == ([], (0, 0, 0))


@pytest.mark.redis
async def test_a_refusal_is_not_stored_so_the_request_runs_once_it_fits(
    budgets: Budgets, ledger: JobLedger
) -> None:
    job = Fixture(ledger=ledger, budgets=budgets, models=MODELS)
    await job.runner.run(_record(_acme("again", max_tokens=400)))
    await job.runner.run(_record(_acme("again", max_tokens=10)))  # asks for less
    first, *_, last = job.publisher.replies(REPLIES)
    assert isinstance(first, ErrorReply)
    assert first.code is ErrorCode.BUDGET_EXHAUSTED
    assert isinstance(last, GenerateResult)
    assert job.chat.calls == 1
    assert await _standing(budgets) == (COST, 0, 0)


@pytest.mark.redis
async def test_a_failed_job_releases_its_hold_and_a_retried_one_too(budgets: Budgets) -> None:
    failing = ScriptedChat(failures=[ErrorCode.INVALID_INPUT, ErrorCode.PROVIDER_DOWN])
    job = Fixture(chat=failing, budgets=budgets, models=MODELS)
    await job.runner.run(_record(_acme("refused")))  # answered invalid_input
    await job.runner.run(_record(_acme("parked")))  # parked on a retry tier
    assert job.count(Outcome.RETRIED) == 1
    assert failing.calls == 2
    assert await _standing(budgets) == (0, 0, 0)


@pytest.mark.redis
async def test_a_running_job_holds_its_worst_case_and_a_cancel_lets_it_go(
    budgets: Budgets,
) -> None:
    chat = ScriptedChat()
    chat.gate = asyncio.Event()  # the answer waits after its first piece
    job = Fixture(chat=chat, budgets=budgets, models=MODELS)
    running = asyncio.create_task(job.runner.run(_record(_acme("job-1"))))
    while not job.publisher.on(REPLIES):  # noqa: ASYNC110 (polls the publisher's list)
        await asyncio.sleep(0.005)
    assert await _standing(budgets) == (0, WORST, 1)
    await job.runner.cancel(CancelJob(request_id="job-1", tenant="acme"))
    await asyncio.wait_for(running, timeout=10)
    assert job.count(Outcome.CANCELLED) == 1
    assert await _standing(budgets) == (0, 0, 0)


@pytest.mark.redis
async def test_settle_and_release(budgets: Budgets) -> None:
    acme = budgets.of("acme")
    assert acme is not None
    first = await budgets.reserve("acme", acme, "a", 0.2)
    assert first is not None
    assert await budgets.reserve("acme", acme, "b", 0.2) is None  # 0.2 held, 0.1 left
    assert await _standing(budgets) == (0, 0.2, 1)
    await budgets.settle(first, 0.05)
    assert await _standing(budgets) == (0.05, 0, 0)
    second = await budgets.reserve("acme", acme, "b", 0.2)
    assert second is not None
    await budgets.release(second)
    assert await _standing(budgets) == (0.05, 0, 0)


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_dead_workers_hold_lapses(redis: RedisClient) -> None:
    book = Budgets(redis, f"unit-{uuid.uuid4().hex[:8]}", {"acme": Budget(usd=0.3)}, hold_s=0.001)
    acme = book.of("acme")
    assert acme is not None
    try:
        assert await book.reserve("acme", acme, "died", 0.3) is not None  # never settled
        taken = None
        for _ in range(200):  # until the next script call sweeps the lapsed hold
            taken = await book.reserve("acme", acme, "next", 0.3)
            if taken is not None:
                break
            await asyncio.sleep(0.01)
        assert taken is not None
        standing = await book.standing("acme")
        assert standing is not None
        assert (standing.reserved_usd, standing.holds) == (0.3, 1)  # "next" alone
    finally:
        await redis.delete(*book.keys("acme", window("day", datetime.now(UTC)).label))


async def test_a_tenant_without_a_budget_costs_no_redis_call() -> None:
    # Redis is nowhere: any call would fail the job (provider_down) after its retries.
    nowhere = connect_redis("redis://127.0.0.1:1")
    budgets = Budgets(nowhere, "unit", {"acme": Budget(usd=1.0)})
    job = Fixture(budgets=budgets, models=MODELS)
    await job.runner.run(_record(encode(_request("free", max_tokens=10))))  # tenant "default"
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
    await nowhere.aclose()


def test_the_worst_case_is_at_the_dearest_providers_prices() -> None:
    models = ModelCatalogue(
        [
            ModelEntry(name="m", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0),
            ModelEntry(name="m", provider="dear", output_usd_per_mtok=8.0),
            ModelEntry(name="m", provider="cheap", input_usd_per_mtok=0.5),
            ModelEntry(name="tts", input_usd_per_mchar=15.0),
        ]
    )
    chat = GenerateRequest(
        request_id="r",
        model="m",
        messages=[ChatMessage(role="user", content="x" * 396)],  # 100 + 4 tokens
        max_tokens=1000,
    )
    assert worst_case_usd(chat, models) == pytest.approx((104 * 1.0 + 1000 * 8.0) / 1e6)
    embed = EmbedRequest(request_id="r", model="m", texts=["abcd" * 10, "ab"])  # 11 + 1
    assert worst_case_usd(embed, models) == pytest.approx(12 / 1e6)
    speech = SpeechRequest(request_id="r", model="tts", voice="v", input="hello")
    assert worst_case_usd(speech, models) == pytest.approx(5 * 15.0 / 1e6)
    assert worst_case_usd(msgspec.structs.replace(chat, model="unpriced"), models) == 0


def test_the_gateway_answers_a_spent_budget_429_in_openais_shape() -> None:
    reply = ChunkStamper("r", 0).error(ErrorCode.BUDGET_EXHAUSTED, "no budget left")
    answer = fleet_error(FleetRequestError(reply))
    assert answer.status == 429
    body = msgspec.json.decode(answer.body())
    assert body == {
        "error": {
            "message": "no budget left",
            "type": "insufficient_quota",
            "param": None,
            "code": "budget_exhausted",
        }
    }


@pytest.mark.redis
async def test_fleet_budgets_shows_spend_reservations_and_limit(
    redis: RedisClient, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = f"unit-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "fleet.toml"
    config.write_text(
        f'redis_url = "{redis_url}"\nnamespace = "{namespace}"\n'
        '[budgets.acme]\nusd = 50\nperiod = "month"\n'
    )
    book = Budgets(redis, namespace, {"acme": Budget(usd=50, period="month")})
    acme = book.of("acme")
    assert acme is not None
    try:
        done = await book.reserve("acme", acme, "done", 2.0)
        assert done is not None
        await book.settle(done, 1.25)
        assert await book.reserve("acme", acme, "running", 3.5) is not None
        assert await _fleet("budgets", "--tenant", "acme", "--config", str(config)) == 0
        (row,) = capsys.readouterr().out.splitlines()[1:]
        month = window("month", datetime.now(UTC)).label
        assert row.split() == ["acme", month, "1.250000", "3.500000", "1", "50.000000", "45.250000"]
        assert await _fleet("budgets", "--tenant", "globex", "--config", str(config)) == 2
        assert "no budget" in capsys.readouterr().err
    finally:
        await redis.delete(*book.keys("acme", window("month", datetime.now(UTC)).label))


async def _fleet(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))  # it runs its own event loop
