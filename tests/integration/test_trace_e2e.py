"""W3C trace context travels from the SDK through Kafka to the worker's provider span."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import ErrorCode
from producer_sdk import FleetClient, FleetRequestError
from tests.conftest import Infra
from tests.integration.harness import read_dead_letters, serving
from tests.integration.scripted_chat import ScriptedChat
from tests.integration.test_delivery import MODEL, running
from workers import ProviderSpec, WorkerSettings, build_worker
from workers.retry import RetryPolicy

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process; nothing else in the tests sets it
    yield exporter
    provider.shutdown()


async def test_the_trace_continues_from_producer_to_provider_call(
    spans: InMemorySpanExporter, settings: WorkerSettings, client: FleetClient
) -> None:
    tracer = trace.get_tracer("test")
    async with running(settings, ScriptedChat()):
        with tracer.start_as_current_span("backend request") as root:
            await client.generate("hi", model=MODEL)
    trace_id = root.get_span_context().trace_id
    finished = {span.name: span for span in spans.get_finished_spans()}
    process = finished[f"process {settings.namespace}.v1.generate.requests"]
    chat = finished[f"chat {MODEL}"]
    assert process.context.trace_id == trace_id
    assert process.parent is not None
    assert process.parent.span_id == root.get_span_context().span_id
    assert chat.context.trace_id == trace_id
    assert chat.parent is not None
    assert chat.parent.span_id == process.context.span_id
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.request.model"] == MODEL
    assert chat.attributes["gen_ai.usage.output_tokens"] == 3


SECRET = "sk-fleet-test-NEVER-SHOWN-4c1d"


async def test_an_api_key_appears_in_no_log_span_reply_or_dead_letter(
    spans: InMemorySpanExporter,
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
    assert len(dead) == 1

    seen = [
        str(info.value),
        repr(info.value.reply),
        repr(settings),
        repr(worker.handler),
        caplog.text,
        *(
            repr(dict(s.attributes or {})) + repr(s.events) + repr(s.status)
            for s in spans.get_finished_spans()
        ),
        *(repr(r.headers) + repr(r.value) for r in dead),
    ]
    assert "provider_down" in caplog.text or "failed" in caplog.text  # the failure was logged
    leaks = [text for text in seen if SECRET in text]
    assert leaks == []
