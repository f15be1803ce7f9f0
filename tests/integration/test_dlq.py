"""`fleet dlq list` and `fleet dlq replay` as an operator runs them, against the real broker
and Redis and a real worker: a signed job whose provider kept failing is dead-lettered,
listed with its reason, replayed once the provider is fixed (it runs once, and its caller
gets the answer), and a second replay republishes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from contracts import ErrorCode, GenerateResult
from contracts.names import Header, request_topic
from contracts.secrets import Secret
from producer_sdk import FleetRequestError
from providers.router import ModelRouter
from tests.conftest import REPO, Infra
from tests.integration.harness import read_dead_letters, serving
from tests.integration.scripted_chat import ScriptedChat
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler
from workers.ops.inspect import consumer_lag, job_state
from workers.retry import RetryPolicy

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

MODEL = "scripted-model"
JOB = "dlq-job-1"
TENANT, TENANT_KEY = "acme", "acme-signing-key"


@asynccontextmanager
async def running(settings: WorkerSettings, chat: ScriptedChat) -> AsyncIterator[Worker]:
    async with serving(
        Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat])))
    ) as w:
        yield w


async def _fleet(*args: str, infra: Infra, namespace: str) -> tuple[int, str]:
    """The `fleet` command in a process of its own, pointed at the test's services."""
    env = {
        **os.environ,
        **infra.kafka_env(),
        "FLEET_REDIS_URL": infra.redis_url,
        "FLEET_NAMESPACE": namespace,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.ops.cli", *args,
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def _send_garbage(infra: Infra, namespace: str) -> None:
    """Bytes that are no msgpack at all: the worker dead-letters them as `undecodable`."""
    producer = AIOKafkaProducer(**infra.kafka_options())
    await producer.start()
    try:
        await producer.send_and_wait(request_topic("generate", namespace), b"\xc1\xc1", key=b"junk")
    finally:
        await producer.stop()


async def _requests_with_key(
    infra: Infra, namespace: str, key: bytes, expected: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of the request topic with ``key``, read until ``expected`` are in."""
    consumer = AIOKafkaConsumer(
        request_topic("generate", namespace),
        **infra.kafka_options(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        for _ in range(20):
            batches = await consumer.getmany(timeout_ms=500)
            found += [r for records in batches.values() for r in records if r.key == key]
            if len(found) >= expected:
                break
    finally:
        await consumer.stop()
    return sorted(found, key=lambda r: r.timestamp)


async def _all_taken(settings: WorkerSettings, timeout_s: float = 30) -> None:
    """Return once the worker has committed every record of its request topic: a job
    republished there has run (or been refused) by then."""
    async with asyncio.timeout(timeout_s):
        while True:
            rows = await consumer_lag(settings)
            requests = [r for r in rows if r.kind == "generate" and r.source == "interactive"]
            if requests and all((r.committed or 0) == r.end for r in requests):
                return
            await asyncio.sleep(0.1)


async def test_a_dead_letter_is_listed_then_replayed_once_its_cause_is_fixed(
    settings: WorkerSettings, infra: Infra
) -> None:
    ns = settings.namespace
    chat = ScriptedChat(failures=[ErrorCode.PROVIDER_DOWN] * 50)  # down until fixed
    settings = msgspec.structs.replace(
        settings,
        retry=RetryPolicy(max_retries=1, tiers_s=(0.2,)),
        tenant_keys={TENANT: Secret(TENANT_KEY)},  # the replayed job must still be signed
    )
    client = infra.client(namespace=ns, tenant=TENANT, tenant_key=TENANT_KEY)
    async with running(settings, chat), client:
        with pytest.raises(FleetRequestError) as failed:
            await client.generate("hi", model=MODEL, request_id=JOB, timeout_s=120)
        assert failed.value.code is ErrorCode.PROVIDER_DOWN
        await _send_garbage(infra, ns)
        assert len(await read_dead_letters(infra, ns, expected=2)) == 2
        assert chat.calls == 2  # the first try and its one retry

        code, listing = await _fleet("dlq", "list", "generate", infra=infra, namespace=ns)
        assert code == 0, listing
        [line] = [row for row in listing.splitlines() if JOB in row] or [listing]
        assert f"tenant={TENANT}" in line
        assert "retries_exhausted" in line
        assert "provider_down: scripted failure" in line
        assert f"from {request_topic('generate', ns)}[" in line
        assert "2 dead letter(s) by reason:" in listing
        assert "undecodable" in listing

        code, listing = await _fleet(
            "dlq", "list", "generate", "--json", "--reason", "retries_exhausted",
            infra=infra, namespace=ns,
        )  # fmt: skip
        assert code == 0, listing
        *records, summary = [json.loads(row) for row in listing.splitlines()]
        assert [(r["request_id"], r["tenant"], r["reason"]) for r in records] == [
            (JOB, TENANT, "retries_exhausted")
        ]
        assert records[0]["source_topic"] == request_topic("generate", ns)
        assert summary == {"summary": {"total": 1, "by_reason": {"retries_exhausted": 1}}}

        code, dry = await _fleet(
            "dlq", "replay", "generate", "--dry-run", infra=infra, namespace=ns
        )
        assert code == 1, dry
        assert f"would replay  0@0  {JOB}" in dry
        assert "would replay 1, skipped 1, 0 dealt with by an earlier replay" in dry

        chat.failures.clear()  # the provider is fixed
        inbox = client.router.open(JOB)  # the caller waits for the job again
        try:
            code, replay = await _fleet("dlq", "replay", "generate", infra=infra, namespace=ns)
            assert code == 1, replay  # one record could not be replayed
            assert f"replayed  0@0  {JOB}  retries_exhausted" in replay
            assert "skipped  0@1  (no request id)  undecodable: not a generate request" in replay
            assert "replayed 1, skipped 1" in replay
            answer = await asyncio.wait_for(inbox.get(), timeout=30)
        finally:
            client.router.close(inbox)
        assert isinstance(answer, GenerateResult)
        assert answer.text == "Hello, world"
        assert chat.calls == 3  # it ran again, once
        # The caller's message as it was, retry budget and all: no dead-letter or retry
        # headers (the retry tier's copy had them).
        *_, retried, replayed = await _requests_with_key(infra, ns, JOB.encode(), expected=3)
        assert replayed.value == retried.value
        names = [name for name, _ in replayed.headers]
        assert Header.CONTENT_TYPE in names
        assert Header.TENANT_SIGNATURE in names
        assert Header.RETRY_COUNT in [name for name, _ in retried.headers]
        assert not [n for n in names if n.startswith((Header.DLQ_PREFIX, Header.RETRY_PREFIX))]

        code, again = await _fleet("dlq", "replay", "generate", infra=infra, namespace=ns)
        assert code == 0, again
        assert "replayed 0, skipped 0, 2 dealt with by an earlier replay" in again

        # Asked to replay it again, the ledger says the job has succeeded since: not rerun.
        code, forced = await _fleet(
            "dlq", "replay", "generate", "--from-start", "--request-id", JOB,
            infra=infra, namespace=ns,
        )  # fmt: skip
        assert code == 1, forced
        assert "succeeded" in forced
        await _all_taken(settings)  # a republished job would have run by now
        assert chat.calls == 3
    state = await job_state(settings, JOB, kind="generate", tenant=TENANT)
    assert (state.done, state.running) == (True, False)
