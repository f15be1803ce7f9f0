"""The runner with tenant keys: signed requests run, forged, unsigned and unknown tenants are
refused (and read no stored answer); cancels only touch their own tenant's jobs, and the
control listener applies only signed ones, dead-lettering a forged one with the reason."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest
from aiokafka import AIOKafkaConsumer

from contracts import (
    CancelJob,
    DeadLetterReason,
    ErrorCode,
    ErrorReply,
    GenerateResult,
)
from contracts.codec import encode
from contracts.names import Header, control_topic
from contracts.signing import sign
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.job_runner_harness import (
    KEYS,
    REPLIES,
    Fixture,
    _final,
    _record,
    _request,
    _signed,
)
from tests.unit.memory_publisher import MemoryPublisher
from tests.unit.test_failure_table import _Fetches
from tests.unit.test_failure_table import _record as _control_record
from workers.control import ControlListener
from workers.dead_letter import DeadLetters
from workers.idempotency import JobLedger
from workers.metrics import Outcome, WorkerMetrics


async def test_a_request_signed_with_its_tenants_key_runs() -> None:
    job = Fixture(tenant_keys=KEYS)
    await job.runner.run(_signed(_request(tenant="acme"), KEYS["acme"]))
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
    assert job.dead_letters() == []


@pytest.mark.parametrize(
    ("tenant", "key", "why"),
    [
        ("acme", KEYS["globex"], "does not match tenant 'acme'"),  # globex posing as acme
        ("acme", None, "not signed"),
        ("initech", KEYS["acme"], "'initech' is not configured"),
    ],
    ids=["forged", "unsigned", "unknown tenant"],
)
async def test_a_request_whose_tenant_cannot_be_verified_is_refused_with_auth(
    tenant: str, key: bytes | None, why: str
) -> None:
    job = Fixture(tenant_keys=KEYS)
    await job.runner.run(_signed(_request(tenant=tenant), key))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.TENANT_UNVERIFIED
    assert why in detail
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.AUTH
    assert job.chat.calls == 0  # nothing ran, nothing was read


async def test_a_signature_covers_every_byte_of_the_request() -> None:
    job = Fixture(tenant_keys=KEYS)
    record = _signed(_request(tenant="acme"), KEYS["acme"])
    tampered = encode(_request(tenant="acme", max_tokens=999))
    await job.runner.run(_record(tampered, list(record.headers)))
    ((reason, _),) = job.dead_letters()
    assert reason == DeadLetterReason.TENANT_UNVERIFIED


async def test_another_tenants_cancel_stops_nothing() -> None:
    job = Fixture(ScriptedChat(pieces=("a",) * 20, piece_delay_s=0.01))
    running = asyncio.create_task(job.runner.run(_record(encode(_request()))))
    while not job.publisher.on(REPLIES):  # noqa: ASYNC110 (polls the publisher's list)
        await asyncio.sleep(0.01)
    await job.runner.cancel(CancelJob(request_id="job-1", tenant="someone-else"))
    await asyncio.wait_for(running, timeout=10)
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
    assert job.count(Outcome.CANCELLED) == 0


@pytest.mark.redis
async def test_another_tenants_cancel_of_a_queued_job_is_ignored(ledger: JobLedger) -> None:
    job = Fixture(ledger=ledger)
    request = _request(deadline_ms=int(time.time() * 1000) + 60_000)
    submission = str(request.deadline_ms)
    await job.runner.cancel(
        CancelJob(request_id="job-1", tenant="someone-else", submission=submission)
    )
    await job.runner.run(_record(encode(request)))
    assert job.chat.calls == 1  # its own tenant never cancelled it
    assert job.count(Outcome.SKIPPED_CANCELLED) == 0


@pytest.mark.redis
async def test_a_forged_request_reads_no_stored_answer_of_the_tenant_it_names(
    ledger: JobLedger,
) -> None:
    job = Fixture(ScriptedChat(pieces=("acme's", " answer")), ledger=ledger, tenant_keys=KEYS)
    await job.runner.run(_signed(_request(tenant="acme"), KEYS["acme"]))
    answered = len(job.publisher.on(REPLIES))
    # The same request id of the same tenant is one job: its stored answer, were it read.
    await job.runner.run(_signed(_request(tenant="acme"), KEYS["globex"]))
    forged = job.publisher.replies(REPLIES)[answered:]
    assert [type(chunk) for chunk in forged] == [ErrorReply]
    assert _final(forged).code is ErrorCode.AUTH  # type: ignore[union-attr]
    ((reason, _),) = job.dead_letters()
    assert reason == DeadLetterReason.TENANT_UNVERIFIED
    assert job.chat.calls == 1


async def test_the_control_listener_applies_a_signed_cancel_and_dead_letters_a_forged_one() -> None:
    topic = control_topic("generate", "unit")
    dead = "unit.v1.generate.dead-letter"
    publisher = MemoryPublisher()
    signed = encode(CancelJob(request_id="job-1", tenant="acme"))
    forged = encode(CancelJob(request_id="job-2", tenant="acme"))
    consumer = _Fetches(
        topic,
        [
            _control_record(topic, signed, [(Header.TENANT_SIGNATURE, sign(KEYS["acme"], signed))]),
            _control_record(
                topic, forged, [(Header.TENANT_SIGNATURE, sign(KEYS["globex"], forged))]
            ),
        ],
    )
    cancels: list[CancelJob] = []

    async def on_cancel(message: CancelJob) -> None:
        cancels.append(message)

    listener = ControlListener(
        cast(AIOKafkaConsumer, consumer),
        topic,
        on_cancel,
        tenant_keys=KEYS,
        dead_letters=DeadLetters(publisher, dead, WorkerMetrics("generate")),
    )
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(consumer.fetched.wait(), timeout=5)
    listener.stop()
    await task
    assert [c.request_id for c in cancels] == ["job-1"]
    (letter,) = publisher.on(dead)
    assert letter.value == forged
    assert letter.headers[Header.DLQ_REASON] == DeadLetterReason.TENANT_UNVERIFIED.value.encode()
    assert b"does not match tenant 'acme'" in letter.headers[Header.DLQ_DETAIL]
