"""W3C trace context in Kafka headers, so one trace runs from the producer to the provider call.

OpenTelemetry is optional for SDK users: without ``opentelemetry-api`` both functions do nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

try:
    # Only the API: the SDK (exporters, processors) is the application's choice, not ours.
    from opentelemetry import propagate

    _HAVE_OTEL = True
except ImportError:
    _HAVE_OTEL = False

if TYPE_CHECKING:
    from opentelemetry.context import Context

Headers = Sequence[tuple[str, bytes]]


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
