"""W3C trace context travels from the SDK through Kafka to the worker's spans, and the spans
and metrics leave the process over OTLP/HTTP, set up from OTEL_* variables as a worker does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import openai
import pytest
from opentelemetry import propagate, trace
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from contracts import ErrorCode, VectorRecord
from contracts.secrets import Secret
from gateway import Gateway
from producer_sdk import FleetClient, FleetRequestError
from providers.telemetry import Metric
from tests.conftest import Infra
from tests.integration.harness import read_dead_letters, serving
from tests.integration.otlp_receiver import OtlpReceiver, attributes
from tests.integration.scripted_chat import ScriptedChat
from tests.integration.test_delivery import MODEL, running
from tests.integration.worker_processes import WorkerProcess
from transport.telemetry_export import TelemetryExport, configure_from_env
from workers import ProviderSpec, WorkerSettings, build_worker
from workers.retry import RetryPolicy

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

SERVICE = "fleet-worker-generate"


class Exported:
    """The process's SDK, set up from the variables alone, and the endpoint it exports to."""

    def __init__(self, receiver: OtlpReceiver, export: TelemetryExport) -> None:
        self.receiver = receiver
        self.export = export

    def trace_of(self, root: trace.Span) -> dict[str, Span]:
        """The spans that arrived in ``root``'s trace, by name, once all were sent."""
        assert self.export.force_flush()
        trace_id = root.get_span_context().trace_id.to_bytes(16, "big")
        spans = [span for _, span in self.receiver.spans() if span.trace_id == trace_id]
        by_name = {span.name: span for span in spans}
        assert len(by_name) == len(spans), [span.name for span in spans]
        return by_name

    def service_of(self, span: Span) -> str:
        """The service.name of the process that sent ``span``."""
        (service,) = {name for name, sent in self.receiver.spans() if sent.span_id == span.span_id}
        return service


@pytest.fixture(scope="module")
def otel() -> Iterator[Exported]:
    with OtlpReceiver() as receiver:
        with pytest.MonkeyPatch.context() as env:
            for name in [n for n in os.environ if n.startswith("OTEL_")]:
                env.delenv(name)
            # What an operator sets on a worker: the OTLP endpoint, nothing else.
            env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
            export = configure_from_env(SERVICE)
        # Once per process: nothing else in the tests sets the global providers.
        assert export is not None
        yield Exported(receiver, export)
        export.shutdown()
        assert receiver.received.refused == []


def _span_id(span: trace.Span) -> bytes:
    return span.get_span_context().span_id.to_bytes(8, "big")


async def test_the_trace_runs_from_producer_to_provider_call_and_leaves_the_process(
    otel: Exported, settings: WorkerSettings, client: FleetClient
) -> None:
    tracer = trace.get_tracer("test")
    async with running(settings, ScriptedChat()):
        with tracer.start_as_current_span("backend request") as root:
            await client.generate("hi", model=MODEL)
    spans = otel.trace_of(root)
    topic = f"{settings.namespace}.v1.generate.requests"
    send = spans[f"send {topic}"]
    process = spans[f"process {topic}"]
    chat = spans[f"chat {MODEL}"]
    assert (send.kind, process.kind, chat.kind) == (
        Span.SPAN_KIND_PRODUCER,
        Span.SPAN_KIND_CONSUMER,
        Span.SPAN_KIND_CLIENT,
    )
    assert send.parent_span_id == _span_id(root)
    assert process.parent_span_id == send.span_id
    assert chat.parent_span_id == process.span_id
    sent = attributes(send)
    assert sent["messaging.system"] == "kafka"
    assert sent["messaging.operation.type"] == "send"
    assert sent["messaging.destination.name"] == topic
    assert sent["messaging.destination.partition.id"] in ("0", "1")
    assert (
        sent["messaging.destination.partition.id"]
        == attributes(process)["messaging.destination.partition.id"]
    )
    assert sent["messaging.kafka.offset"] == attributes(process)["messaging.kafka.offset"]
    assert isinstance(sent["messaging.message.body.size"], int)
    assert sent["messaging.message.body.size"] > 0
    called = attributes(chat)
    assert called["gen_ai.request.model"] == MODEL
    assert called["gen_ai.response.model"] == MODEL  # the scripted provider answered itself
    assert called["gen_ai.usage.output_tokens"] == 3
    assert {service for service, _ in otel.receiver.spans()} == {SERVICE}
    durations = [m for _, m in otel.receiver.metrics() if m.name == Metric.DURATION]
    assert durations, [m.name for _, m in otel.receiver.metrics()]
    points = [p for m in durations for p in m.histogram.data_points]
    models = {
        a.value.string_value
        for p in points
        for a in p.attributes
        if a.key == "gen_ai.response.model"
    }
    assert MODEL in models
    assert sum(p.count for p in points) >= 1


async def test_the_gateways_span_joins_the_callers_trace_and_parents_the_job(
    otel: Exported, infra: Infra, settings: WorkerSettings
) -> None:
    """An OpenAI client's request that carries a traceparent: the gateway's SERVER span is
    its child, and the job's send span (and so the worker's) is the gateway span's."""
    key = "sk-traced-" + uuid.uuid4().hex
    gateway = Gateway(
        infra.connection,
        namespace=settings.namespace,
        api_keys={"acme": Secret(key)},
        tenant_keys={},
        models={MODEL: "generate"},
        port=0,
    )
    base_url = f"http://{gateway.host}:{gateway.port}/v1"
    async with contextlib.AsyncExitStack() as started:
        # Both wait on the broker (a group to join, a reply topic to make): side by side.
        await asyncio.gather(
            started.enter_async_context(running(settings, ScriptedChat())),
            started.enter_async_context(gateway.running()),
        )
        with trace.get_tracer("test").start_as_current_span("backend request") as root:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # what an instrumented HTTP client sends
        async with openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0) as client:
            answer = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_headers=carrier
            )
    spans = otel.trace_of(root)
    topic = f"{settings.namespace}.v1.generate.requests"
    served = spans["POST /v1/chat/completions"]
    assert served.kind == Span.SPAN_KIND_SERVER
    assert served.parent_span_id == _span_id(root)
    assert spans[f"send {topic}"].parent_span_id == served.span_id
    assert spans[f"process {topic}"].parent_span_id == spans[f"send {topic}"].span_id
    assert attributes(served) == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "fleet.request_id": answer.headers["x-request-id"],
    }


async def test_a_fleet_worker_process_exports_what_its_variables_say(
    otel: Exported, infra: Infra, namespace: str, tmp_path: Path, client: FleetClient
) -> None:
    """The real `fleet worker` command, given the endpoint alone, continues the client's
    trace in its own process and sends its spans when it is stopped: here a vectors job's
    span between the consumer span and the store call."""
    config = tmp_path / "worker.toml"
    config.write_text("embeddings = []\n")  # vectors given: no embedding model to load
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": otel.receiver.endpoint}
    worker = WorkerProcess("vectors", infra, namespace, config, tmp_path / "w.log", env=endpoint)
    collection = f"traced-{uuid.uuid4().hex[:8]}"
    records = [VectorRecord(id=str(i), vector=[1.0, float(i)]) for i in range(3)]
    try:
        await worker.wait_ready()
        with trace.get_tracer("test").start_as_current_span("backend request") as root:
            result = await client.upsert(collection, records)
        worker.terminate()
        assert await asyncio.to_thread(worker.wait, 60) == 0
    finally:
        worker.ensure_stopped()
    assert result.upserted == 3
    spans = otel.trace_of(root)
    topic = f"{namespace}.v1.vectors.requests"
    process, job, store = spans[f"process {topic}"], spans[f"upsert {collection}"], spans["upsert"]
    assert process.parent_span_id == spans[f"send {topic}"].span_id
    assert job.parent_span_id == process.span_id
    assert store.parent_span_id == job.span_id  # the store call, inside the job
    assert attributes(job) == {
        "db.operation.name": "upsert",
        "db.collection.name": collection,
        "db.operation.batch.size": 3,
        "fleet.vector_store": "redis",
        "fleet.vectors.upserted": 3,
        "fleet.vectors.deleted": 0,
    }
    services = {otel.service_of(span) for span in (process, job, store)}
    assert services == {"fleet-worker-vectors"}
    assert otel.service_of(spans[f"send {topic}"]) == SERVICE


SECRET = "sk-fleet-test-NEVER-SHOWN-4c1d"


async def test_an_api_key_appears_in_no_log_span_reply_or_dead_letter(
    otel: Exported,
    settings: WorkerSettings,
    client: FleetClient,
    infra: Infra,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A real OpenAI-compatible provider pointed at a closed port: the call fails for real.
    chat_spec = ProviderSpec(
        name="openai",
        config={
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": SECRET,
            "models": ["remote-model"],
            "retry": {"max_attempts": 1},
        },
    )
    settings = msgspec.structs.replace(
        settings, chat=[chat_spec], memory=None, retry=RetryPolicy(max_retries=0, tiers_s=(0.2,))
    )
    caplog.set_level(logging.DEBUG)
    worker = await build_worker("generate", settings)
    async with serving(worker):
        with pytest.raises(FleetRequestError) as info:
            await client.generate("hi", model="remote-model")
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    dead = await read_dead_letters(infra, settings.namespace, expected=1)
    assert otel.export.force_flush()
    assert len(dead) == 1
    assert [s.name for _, s in otel.receiver.spans()].count("chat remote-model") == 1

    seen = [
        str(info.value),
        repr(info.value.reply),
        repr(settings),
        repr(worker.handler),
        caplog.text,
        # Everything that left the process: attributes, events and status of each span.
        *(str(span) for _, span in otel.receiver.spans()),
        *(str(metric) for _, metric in otel.receiver.metrics()),
        *(repr(r.headers) + repr(r.value) for r in dead),
    ]
    assert "provider_down" in caplog.text or "failed" in caplog.text  # the failure was logged
    leaks = [text for text in seen if SECRET in text]
    assert leaks == []
