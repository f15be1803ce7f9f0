"""What the gateway watches of each request without changing it: its metrics, and its SERVER
span, which continues the caller's trace (an incoming ``traceparent``) and encloses the
job's ``send`` span, so one trace runs from the HTTP client to the provider call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram
from starlette.routing import Route
from starlette.types import Scope

from gateway.metrics import GatewayMetrics
from gateway.overhead import MEASURED
from gateway.request_ids import request_id
from transport.tracing import extract_context, failure_typed_span, tracing_configured

_SCOPE: Final = "ai_job_fleet.gateway"
_UNMATCHED: Final = "unmatched"  # a path no route serves: not a label value per path
TENANT: Final = "tenant"  # scope["state"]: whose key the request carried


class Observed:
    """What gateway/front_door.py records of each request: ``begin``, the app inside
    ``span``, ``end``. Spans are made only when the process set up OpenTelemetry before the
    first request (``fleet gateway`` does it from the OTEL_* variables): asked once."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._traced = tracing_configured()
        # Each label set's child, looked up once: prometheus_client's ``labels`` checks and
        # locks on every call. As many entries as the metrics have series.
        self._counted: dict[tuple[str, int, str], Counter] = {}
        self._timed: dict[str, tuple[Histogram, Histogram]] = {}  # duration, overhead
        # Requests in flight, counted here and read by the gauge when /metrics is asked:
        # no lock taken twice a request, as the gauge's own inc and dec take.
        self._in_flight = 0
        metrics.in_flight.set_function(lambda: self._in_flight)

    def begin(self) -> None:
        self._in_flight += 1

    def span(self, scope: Scope) -> AbstractContextManager[trace.Span | None]:
        """The request's SERVER span, where tracing is on (``describe`` it once answered)."""
        if not self._traced:
            return nullcontext()
        return _server_span(scope)

    def end(self, scope: Scope, status: int, seconds: float) -> None:
        """The request answered with ``status`` (500 when the app failed before it
        answered), ``seconds`` after its head arrived."""
        self._in_flight -= 1
        state = scope.get("state", {})
        route = _route(scope)
        labels = (route, status, state.get(TENANT, ""))
        if (counted := self._counted.get(labels)) is None:
            counted = self._counted[labels] = self._metrics.requests.labels(
                route, str(status), labels[2]
            )
        counted.inc()
        if (timed := self._timed.get(route)) is None:
            metrics = self._metrics
            timed = self._timed[route] = (
                metrics.duration.labels(route),
                metrics.overhead.labels(route),
            )
        timed[0].observe(seconds)
        if (overhead := state.get(MEASURED)) is not None:
            timed[1].observe(overhead)


@contextmanager
def _server_span(scope: Scope) -> Iterator[trace.Span]:
    headers = [(name.decode("latin-1"), value) for name, value in scope["headers"]]
    parent = extract_context(headers)
    token = otel_context.attach(parent) if parent is not None else None
    try:
        method = scope["method"]
        attributes = {"http.request.method": method, "url.path": scope["path"]}
        # Named by the method now, by the route once routing has found it.
        with failure_typed_span(_SCOPE, method, SpanKind.SERVER, attributes) as span:
            yield span
    finally:
        if token is not None:
            otel_context.detach(token)


def describe(span: trace.Span, scope: Scope, status: int) -> None:
    """What the span learnt from answering: the route, the status and the request id."""
    route = _route(scope)
    if route != _UNMATCHED:
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("fleet.request_id", request_id(scope))
    if status >= 500:  # a server span's error: the client's own (4xx) are not
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR, str(status)))


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return route.path if isinstance(route, Route) else _UNMATCHED
