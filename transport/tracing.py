"""W3C trace context in Kafka headers, so one trace runs from the producer to the provider call,
and the producer's span around each request it sends.

OpenTelemetry is optional for SDK users: without ``opentelemetry-api`` nothing here does
anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Final

try:
    # Only the API: the SDK (exporters, processors) is the application's choice, not ours.
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    _HAVE_OTEL = True
except ImportError:
    _HAVE_OTEL = False

try:  # the API has no public name for "no meter provider set yet"; checked once per client
    from opentelemetry.metrics._internal import _ProxyMeterProvider
except ImportError:  # no OpenTelemetry, or a later API moved it: then metrics count as set
    _ProxyMeterProvider = None  # type: ignore[assignment, misc]

if TYPE_CHECKING:
    from aiokafka.structs import RecordMetadata
    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

Headers = Sequence[tuple[str, bytes]]

_SCOPE: Final = "ai_job_fleet.producer"


def inject_headers(headers: Headers) -> list[tuple[str, bytes]]:
    """Return ``headers`` plus the current trace context (``traceparent``, ``tracestate``).

    Uses the globally configured propagators (W3C trace context by default). Headers the
    propagators set replace any of the same name, so a re-sent message carries one trace.
    With no active span, or without OpenTelemetry, the headers come back unchanged.
    """
    if not _HAVE_OTEL:
        return list(headers)
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return list(headers)
    kept = [(key, value) for key, value in headers if key.lower() not in carrier]
    return kept + [(key, value.encode()) for key, value in carrier.items()]


def extract_context(headers: Headers) -> Context | None:
    """The trace context a message carries, to parent the worker's spans; None if it has none."""
    if not _HAVE_OTEL:
        return None
    carrier: dict[str, list[str]] = {}
    for key, value in headers:
        # Kafka headers are bytes and may repeat; trace headers are ASCII, so latin-1 never fails
        # and anything malformed is rejected by the propagator instead of raising here.
        carrier.setdefault(key.lower(), []).append(value.decode("latin-1"))
    context = propagate.extract(carrier)
    return context or None


def tracing_configured() -> bool:
    """Whether this process set up an OpenTelemetry SDK (traces or metrics). Without one,
    spans are skipped instead of built as no-ops nobody would see (microseconds a job).
    Asking costs two environment lookups: callers ask once, when they are built."""
    if not _HAVE_OTEL:
        return False
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True
    if _ProxyMeterProvider is None:
        return True
    return not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider)


class SentMessage:
    """What the producer span learns once the broker has the message; records nothing in a
    process without telemetry."""

    def delivered(self, metadata: RecordMetadata) -> None:
        return None


class _TracedMessage(SentMessage):
    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def delivered(self, metadata: RecordMetadata) -> None:
        self._span.set_attribute("messaging.destination.partition.id", str(metadata.partition))
        self._span.set_attribute("messaging.kafka.offset", metadata.offset)


_UNTRACED: Final = nullcontext(SentMessage())


class ProducerSpans:
    """A PRODUCER span per message sent, named and described by the OpenTelemetry messaging
    conventions (``send <topic>``). Headers injected inside it carry its context, so the
    worker's consumer span is its child. Asks once, when built, whether the process traces."""

    def __init__(self) -> None:
        self._on = tracing_configured()

    def send(self, topic: str, key: str, body_size: int) -> AbstractContextManager[SentMessage]:
        if not self._on:
            return _UNTRACED
        return _producer_span(topic, key, body_size)


@contextmanager
def _producer_span(topic: str, key: str, body_size: int) -> Iterator[SentMessage]:
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
        "messaging.kafka.message.key": key,
        "messaging.message.body.size": body_size,
    }
    with failure_typed_span(_SCOPE, f"send {topic}", SpanKind.PRODUCER, attributes) as span:
        yield _TracedMessage(span)


@contextmanager
def failure_typed_span(
    scope: str, name: str, kind: SpanKind, attributes: dict[str, AttributeValue]
) -> Iterator[trace.Span]:
    """A current span whose failure is marked by the exception's type alone: the text of an
    error we did not build may name hosts or carry keys, and its raiser gets it anyway."""
    with trace.get_tracer(scope).start_as_current_span(
        name,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
            raise
