"""W3C trace context travels from the SDK through Kafka to the worker's provider span."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from producer_sdk import FleetClient
from tests.integration.scripted_chat import ScriptedChat
from tests.integration.test_delivery import MODEL, running
from workers import WorkerSettings

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
