"""OpenTelemetry spans and metrics for provider calls, named by the GenAI semantic conventions.

Uses the global tracer and meter providers by default: a no-op unless the process set up an SDK.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, TypeAlias

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from contracts.errors import ErrorCode
from contracts.usage import Usage
from providers.errors import ProviderError
from transport.tracing import tracing_configured

_SCOPE: Final = "ai_job_fleet.providers"


class Attr:
    """Attribute names, from the GenAI semantic conventions unless prefixed ``fleet.``."""

    OPERATION: Final = "gen_ai.operation.name"
    SYSTEM: Final = "gen_ai.system"
    # Newer conventions renamed gen_ai.system; both are set so old and new backends group alike.
    PROVIDER_NAME: Final = "gen_ai.provider.name"
    REQUEST_MODEL: Final = "gen_ai.request.model"
    RESPONSE_MODEL: Final = "gen_ai.response.model"
    INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
    FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
    TOKEN_TYPE: Final = "gen_ai.token.type"
    ERROR_TYPE: Final = "error.type"
    CATEGORY: Final = "fleet.provider.category"
    ERROR_CODE: Final = "fleet.error.code"
    # hit or miss, on the vector cache's lookups.
    CACHE_RESULT: Final = "fleet.cache.result"


class Metric:
    DURATION: Final = "gen_ai.client.operation.duration"
    TOKEN_USAGE: Final = "gen_ai.client.token.usage"
    ERRORS: Final = "fleet.provider.errors"
    VECTOR_CACHE_LOOKUPS: Final = "fleet.provider.vector_cache.lookups"


CANCELLED: Final = "cancelled"

# Bucket boundaries the semantic conventions recommend for these two histograms.
_DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                            20.48, 40.96, 81.92)  # fmt: skip
_TOKEN_BUCKETS: Final = tuple(4.0**i for i in range(14))


class ProviderSpan:
    """What a provider tells the span about its call once it knows: usage, finish reasons."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.response_model: str | None = None

    def set_usage(self, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        if input_tokens is not None:
            self.input_tokens = input_tokens
            self.span.set_attribute(Attr.INPUT_TOKENS, input_tokens)
        if output_tokens is not None:
            self.output_tokens = output_tokens
            self.span.set_attribute(Attr.OUTPUT_TOKENS, output_tokens)

    def record_usage(self, usage: Usage) -> None:
        self.set_usage(usage.prompt_tokens, usage.completion_tokens)

    def set_finish_reasons(self, *reasons: str) -> None:
        self.span.set_attribute(Attr.FINISH_REASONS, list(reasons))

    def set_response_model(self, model: str) -> None:
        self.response_model = model
        self.span.set_attribute(Attr.RESPONSE_MODEL, model)


class ProviderTelemetry:
    """A tracer and the instruments built on one meter; build once, open a span per call."""

    def __init__(
        self, tracer: trace.Tracer | None = None, meter: metrics.Meter | None = None
    ) -> None:
        self._tracer = tracer or trace.get_tracer(_SCOPE)
        meter = meter or metrics.get_meter(_SCOPE)
        self._duration = meter.create_histogram(
            Metric.DURATION,
            unit="s",
            description="Duration of provider operations",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            Metric.TOKEN_USAGE,
            unit="{token}",
            description="Tokens used per provider operation",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self._errors = meter.create_counter(
            Metric.ERRORS, unit="{error}", description="Failed provider operations by error code"
        )

    @asynccontextmanager
    async def span(
        self, category: str, provider: str, operation: str, model: str | None
    ) -> AsyncIterator[ProviderSpan]:
        attributes: dict[str, AttributeValue] = {
            Attr.OPERATION: operation,
            Attr.SYSTEM: provider,
            Attr.PROVIDER_NAME: provider,
            Attr.CATEGORY: category,
        }
        if model is not None:
            attributes[Attr.REQUEST_MODEL] = model
        name = f"{operation} {model}" if model else operation
        started = time.perf_counter()
        error_type: str | None = None
        # Exceptions are recorded below, by hand: the SDK's own recording writes the exception
        # text, which for errors we did not build may carry URLs with keys or prompt content.
        with self._tracer.start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            handle = ProviderSpan(span)
            try:
                yield handle
            except ProviderError as exc:
                error_type = exc.code.value
                # ProviderError messages are built by providers to be safe to show.
                span.record_exception(exc)
                self._fail(span, attributes, error_type, exc.code)
                raise
            except asyncio.CancelledError:
                error_type = CANCELLED
                span.set_attribute(Attr.ERROR_TYPE, error_type)
                raise
            except Exception as exc:
                error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
                span.add_event("exception", {"exception.type": error_type})
                self._fail(span, attributes, error_type, ErrorCode.INTERNAL)
                raise
            finally:
                self._record(handle, attributes, error_type, time.perf_counter() - started)

    def _fail(
        self,
        span: trace.Span,
        attributes: Mapping[str, AttributeValue],
        error_type: str,
        code: ErrorCode,
    ) -> None:
        span.set_attribute(Attr.ERROR_TYPE, error_type)
        span.set_attribute(Attr.ERROR_CODE, code.value)
        span.set_status(Status(StatusCode.ERROR, error_type))
        self._errors.add(
            1, {**attributes, Attr.ERROR_TYPE: error_type, Attr.ERROR_CODE: code.value}
        )

    def _record(
        self,
        handle: ProviderSpan,
        attributes: Mapping[str, AttributeValue],
        error_type: str | None,
        duration_s: float,
    ) -> None:
        metric_attributes = dict(attributes)
        if handle.response_model is not None:
            metric_attributes[Attr.RESPONSE_MODEL] = handle.response_model
        for token_type, count in (("input", handle.input_tokens), ("output", handle.output_tokens)):
            if count is not None:
                self._tokens.record(count, {**metric_attributes, Attr.TOKEN_TYPE: token_type})
        if error_type is not None:
            metric_attributes[Attr.ERROR_TYPE] = error_type
        self._duration.record(duration_s, metric_attributes)


_GLOBAL: Final = ProviderTelemetry()


def vector_cache_lookups(meter: metrics.Meter | None = None) -> metrics.Counter:
    """The counter of vectors looked up in a provider's vector cache, by ``Attr.CACHE_RESULT``
    (providers/embeddings/vector_cache.py). On the global meter it records nothing until the
    process sets up an SDK, and from then on records there."""
    return (meter or metrics.get_meter(_SCOPE)).create_counter(
        Metric.VECTOR_CACHE_LOOKUPS,
        unit="{vector}",
        description="Vectors looked up in a provider's vector cache, hits and misses",
    )


class _Untraced:
    """The span of a call in a process without telemetry: records nothing. One manager for
    every call, where a generator-based one per call cost microseconds on every job."""

    async def __aenter__(self) -> ProviderSpan:
        return ProviderSpan(trace.INVALID_SPAN)

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_UNTRACED: Final = _Untraced()

SpanOpener: TypeAlias = Callable[
    [str, str, str, str | None], AbstractAsyncContextManager[ProviderSpan]
]


def untraced_span(
    category: str, provider: str, operation: str, model: str | None
) -> AbstractAsyncContextManager[ProviderSpan]:
    """The span ``provider_span`` gives in a process without telemetry, without asking
    again: for callers that ask ``tracing_configured`` once, when they are built."""
    return _UNTRACED


def span_opener() -> SpanOpener:
    """``provider_span``, or ``untraced_span`` when this process has set up no OpenTelemetry
    now (asking costs two environment lookups: a caller asks once, not per call)."""
    return provider_span if tracing_configured() else untraced_span


def provider_span(
    category: str,
    provider: str,
    operation: str,
    model: str | None,
    *,
    tracer: trace.Tracer | None = None,
    meter: metrics.Meter | None = None,
) -> AbstractAsyncContextManager[ProviderSpan]:
    """Trace and measure one provider call: ``async with provider_span(...) as call:``.

    ``operation`` is the GenAI operation name (``chat``, ``embeddings``, ``transcription``);
    ``provider`` the provider's registry name. Attributes never carry keys or message content.
    """
    # Building instruments again is cheap: the SDK hands back the ones a meter already has.
    explicit = tracer is not None or meter is not None
    if not explicit and not tracing_configured():
        return _UNTRACED
    telemetry = ProviderTelemetry(tracer, meter) if explicit else _GLOBAL
    return telemetry.span(category, provider, operation, model)
