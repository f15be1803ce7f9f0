"""Provider telemetry: GenAI span attributes, error codes, and metrics through an SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from contracts import ErrorCode
from contracts.usage import Usage
from providers import ProviderError
from providers.telemetry import Attr, Metric, ProviderSpan, provider_span


class Otel(msgspec.Struct):
    """An SDK of our own, handed to provider_span so the global providers stay untouched."""

    tracer: trace.Tracer
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def span(self) -> ReadableSpan:
        (span,) = self.spans.get_finished_spans()
        return span

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, data point) of every point of metric ``name``."""
        data = self.metrics.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(tracer_provider.get_tracer("test"), meter_provider, spans, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def _span(
    otel: Otel, operation: str = "chat", model: str | None = "smollm2"
) -> AbstractAsyncContextManager[ProviderSpan]:
    return provider_span(
        "chat",
        "local-llama",
        operation,
        model,
        tracer=otel.tracer,
        meter=otel.meter_provider.get_meter("test"),
    )


async def test_success_sets_genai_attributes_and_metrics(otel: Otel) -> None:
    async with _span(otel) as call:
        call.record_usage(Usage(input_tokens=12, output_tokens=34))
        call.set_finish_reasons("stop")
        call.set_response_model("smollm2-135m")

    span = otel.span()
    assert span.name == "chat smollm2"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    assert attributes == {
        Attr.OPERATION: "chat",
        Attr.SYSTEM: "local-llama",
        Attr.PROVIDER_NAME: "local-llama",
        Attr.CATEGORY: "chat",
        Attr.REQUEST_MODEL: "smollm2",
        Attr.RESPONSE_MODEL: "smollm2-135m",
        Attr.INPUT_TOKENS: 12,
        Attr.OUTPUT_TOKENS: 34,
        Attr.FINISH_REASONS: ("stop",),
    }

    ((duration_attrs, duration),) = otel.points(Metric.DURATION)
    assert duration.count == 1
    assert 0 < duration.sum < 60
    assert Attr.ERROR_TYPE not in duration_attrs
    assert duration_attrs[Attr.REQUEST_MODEL] == "smollm2"
    usage = {attrs[Attr.TOKEN_TYPE]: p.sum for attrs, p in otel.points(Metric.TOKEN_USAGE)}
    assert usage == {"input": 12, "output": 34}
    assert otel.points(Metric.ERRORS) == []


async def test_provider_error_is_recorded_by_code(otel: Otel) -> None:
    error = ProviderError(ErrorCode.RATE_LIMIT, "local-llama.chat", "slow down")
    with pytest.raises(ProviderError) as caught:
        async with _span(otel):
            raise error
    assert caught.value is error

    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes[Attr.ERROR_TYPE] == "rate_limit"
    assert attributes[Attr.ERROR_CODE] == "rate_limit"
    (event,) = span.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "providers.errors.ProviderError"

    ((error_attrs, errors),) = otel.points(Metric.ERRORS)
    assert errors.value == 1
    assert error_attrs[Attr.ERROR_TYPE] == "rate_limit"
    ((duration_attrs, _),) = otel.points(Metric.DURATION)
    assert duration_attrs[Attr.ERROR_TYPE] == "rate_limit"


async def test_unexpected_errors_keep_their_text_out_of_the_trace(otel: Otel) -> None:
    leaky = "https://api.example.com/v1?key=sk-live-123 said: my secret prompt"
    with pytest.raises(RuntimeError):
        async with _span(otel, "embeddings", "minilm"):
            raise RuntimeError(leaky)

    span = otel.span()
    assert dict(span.attributes or {})[Attr.ERROR_TYPE] == "builtins.RuntimeError"
    assert span.status.status_code is StatusCode.ERROR
    recorded = [span.status.description, *(span.attributes or {}).values()]
    for event in span.events:
        recorded += [event.name, *(event.attributes or {}).values()]
    assert not any("sk-live-123" in str(v) or "prompt" in str(v) for v in recorded), recorded

    ((error_attrs, errors),) = otel.points(Metric.ERRORS)
    assert errors.value == 1
    assert error_attrs[Attr.ERROR_CODE] == ErrorCode.INTERNAL.value


async def test_cancellation_is_marked_but_not_counted_as_an_error(otel: Otel) -> None:
    with pytest.raises(asyncio.CancelledError):
        async with _span(otel):
            raise asyncio.CancelledError
    assert dict(otel.span().attributes or {})[Attr.ERROR_TYPE] == "cancelled"
    assert otel.points(Metric.ERRORS) == []
    ((duration_attrs, _),) = otel.points(Metric.DURATION)
    assert duration_attrs[Attr.ERROR_TYPE] == "cancelled"


async def test_span_without_model_and_nested_under_the_caller(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("job") as parent:
        async with _span(otel, "embeddings", None) as call:
            assert call.span.get_span_context().trace_id == parent.get_span_context().trace_id
    child = next(s for s in otel.spans.get_finished_spans() if s.name != "job")
    assert child.name == "embeddings"
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    assert Attr.REQUEST_MODEL not in (child.attributes or {})
    # Usage was never reported, so no token metric was recorded.
    assert otel.points(Metric.TOKEN_USAGE) == []


async def test_global_providers_are_the_default() -> None:
    async with provider_span("chat", "local-llama", "chat", "m") as call:
        call.set_usage(input_tokens=1, output_tokens=2)
    # This suite never installs a global SDK, so the default span records nothing.
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        assert not call.span.is_recording()
