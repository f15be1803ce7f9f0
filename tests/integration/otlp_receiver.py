"""An OTLP/HTTP endpoint in the test process: what a collector would receive, decoded from
the protobuf the exporters send (the OpenTelemetry Collector does not install here)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

PROTOBUF = "application/x-protobuf"


class Received:
    """Everything the endpoint was sent, as (service.name, item) pairs, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[str, Span]] = []
        self.metrics: list[tuple[str, Metric]] = []
        self.refused: list[str] = []  # what a collector would have refused, and why


class OtlpReceiver:
    """``with OtlpReceiver() as otlp:`` serves ``otlp.endpoint`` (the base URL that
    OTEL_EXPORTER_OTLP_ENDPOINT takes) on 127.0.0.1, on a port the OS picks."""

    def __init__(self) -> None:
        self.received = Received()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.received))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def spans(self) -> list[tuple[str, Span]]:
        with self.received.lock:
            return list(self.received.spans)

    def metrics(self) -> list[tuple[str, Metric]]:
        with self.received.lock:
            return list(self.received.metrics)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Type") != PROTOBUF:
                self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "content type")
            elif self.path == "/v1/traces":
                traces = ExportTraceServiceRequest.FromString(body)
                with received.lock:
                    received.spans += [
                        (_service(r.resource.attributes), span)
                        for r in traces.resource_spans
                        for scope in r.scope_spans
                        for span in scope.spans
                    ]
                self._answer(ExportTraceServiceResponse().SerializeToString())
            elif self.path == "/v1/metrics":
                metrics = ExportMetricsServiceRequest.FromString(body)
                with received.lock:
                    received.metrics += [
                        (_service(r.resource.attributes), metric)
                        for r in metrics.resource_metrics
                        for scope in r.scope_metrics
                        for metric in scope.metrics
                    ]
                self._answer(ExportMetricsServiceResponse().SerializeToString())
            else:
                self._refuse(HTTPStatus.NOT_FOUND, self.path)

        def _answer(self, body: bytes) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", PROTOBUF)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self, status: HTTPStatus, why: str) -> None:
            with received.lock:
                received.refused.append(why)
            self.send_error(status)

        def log_message(self, format: str, *args: object) -> None:
            return None  # the test reads what arrived, not an access log

    return Handler


def _service(attributes: Iterable[KeyValue]) -> str:
    for attribute in attributes:
        if attribute.key == "service.name":
            return str(attribute.value.string_value)
    return ""


def attributes(span: Span) -> dict[str, str | int | float | bool]:
    """A span's attributes as plain values (lists are left out: no test reads one)."""
    return {a.key: value for a in span.attributes if (value := _value(a.value)) is not None}


def _value(value: AnyValue) -> str | int | float | bool | None:
    kind = value.WhichOneof("value")
    if kind in ("string_value", "int_value", "double_value", "bool_value"):
        found: str | int | float | bool = getattr(value, kind)
        return found
    return None
