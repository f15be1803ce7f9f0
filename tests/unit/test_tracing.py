"""Trace context in Kafka headers: injected by the producer, extracted by the worker."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from contracts.names import ContentType, Header
from tests.conftest import REPO
from transport.tracing import extract_context, inject_headers

BASE = [(Header.CONTENT_TYPE, ContentType.MSGPACK.encode())]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def tracer(spans: InMemorySpanExporter) -> Iterator[trace.Tracer]:
    # A provider of our own: the global one is left alone (it can be set only once).
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider.get_tracer("test")
    provider.shutdown()


def _header(headers: list[tuple[str, bytes]], name: str) -> list[str]:
    return [value.decode() for key, value in headers if key == name]


def test_inject_writes_the_current_span(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("send") as span:
        headers = inject_headers(BASE)
    context = span.get_span_context()
    (traceparent,) = _header(headers, Header.TRACEPARENT)
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    assert int(flags, 16) == context.trace_flags
    assert context.trace_flags.sampled
    assert trace_id == format(context.trace_id, "032x")
    assert span_id == format(context.span_id, "016x")
    assert headers[0] == BASE[0]  # the message's own headers are kept, in front


def test_inject_replaces_a_stale_traceparent(tracer: trace.Tracer) -> None:
    stale = [*BASE, (Header.TRACEPARENT, b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    with tracer.start_as_current_span("resend") as span:
        headers = inject_headers(stale)
    (traceparent,) = _header(headers, Header.TRACEPARENT)
    assert format(span.get_span_context().trace_id, "032x") in traceparent


def test_without_an_active_span_nothing_is_added() -> None:
    assert not trace.get_current_span().get_span_context().is_valid
    assert inject_headers(BASE) == BASE
    assert inject_headers([]) == []


def test_worker_span_continues_the_producer_trace(
    tracer: trace.Tracer, spans: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("send") as send:
        headers = inject_headers(BASE)
    context = extract_context(headers)
    assert context is not None
    with tracer.start_as_current_span("handle", context=context):
        pass
    handle = next(s for s in spans.get_finished_spans() if s.name == "handle")
    sent = send.get_span_context()
    assert handle.context is not None
    assert handle.context.trace_id == sent.trace_id
    assert handle.parent is not None
    assert handle.parent.span_id == sent.span_id
    assert handle.parent.is_remote


def test_tracestate_travels_both_ways() -> None:
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "opaque")]),
    )
    with trace.use_span(NonRecordingSpan(remote)):
        headers = inject_headers(BASE)
    assert _header(headers, "tracestate") == ["vendor=opaque"]
    context = extract_context(headers)
    assert context is not None
    extracted = trace.get_current_span(context).get_span_context()
    assert (extracted.trace_id, extracted.span_id) == (remote.trace_id, remote.span_id)
    assert extracted.trace_state == remote.trace_state


@pytest.mark.parametrize(
    "headers",
    [
        [],
        BASE,
        [*BASE, (Header.TRACEPARENT, b"not-a-traceparent")],
        [*BASE, (Header.TRACEPARENT, b"00-" + b"0" * 32 + b"-" + b"1" * 16 + b"-01")],
        [*BASE, (Header.TRACEPARENT, b"\xff\xfe")],
    ],
)
def test_messages_without_a_valid_trace_have_no_context(headers: list[tuple[str, bytes]]) -> None:
    assert extract_context(headers) is None


def _run(code: str) -> object:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_the_sdk_works_without_opentelemetry() -> None:
    # A None entry in sys.modules makes the import fail, as on a machine without the package.
    result = _run(
        "import json, sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "from transport.tracing import extract_context, inject_headers\n"
        "headers = [('traceparent', b'00-' + b'1' * 32 + b'-' + b'2' * 16 + b'-01')]\n"
        "print(json.dumps([inject_headers([('a', b'b')]) == [('a', b'b')],"
        " extract_context(headers) is None]))\n"
    )
    assert result == [True, True]


def test_the_sdk_does_not_import_the_opentelemetry_sdk() -> None:
    loaded = _run(
        "import json, sys\n"
        "import transport.tracing\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('opentelemetry'))))\n"
    )
    assert isinstance(loaded, list)
    assert "opentelemetry.propagate" in loaded
    assert not [m for m in loaded if m.startswith("opentelemetry.sdk")]
