"""Prometheus metrics of one gateway process (a registry of its own, as each worker has),
served at ``/metrics``: requests by route, status and tenant, those in flight (what an
autoscaler follows), their latency and the gateway's own overhead."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

# The workers' latency buckets: a request's time is mostly its job's.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# The overhead's target is a few milliseconds: finer buckets, from a tenth of one.
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05, 0.25)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fleet_gateway_requests",
            "HTTP requests answered, by route, status and tenant",
            ["route", "status", "tenant"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "fleet_gateway_requests_in_flight",
            "HTTP requests being answered now (a stream until its last chunk)",
            registry=self.registry,
        )
        self.duration = Histogram(
            "fleet_gateway_request_duration_seconds",
            "From a request's head arriving to its answer's last byte",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.overhead = Histogram(
            "fleet_gateway_overhead_seconds",
            "The gateway's own time on a request (x-fleet-gateway-overhead-ms)",
            ["route"],
            buckets=_OVERHEAD_BUCKETS,
            registry=self.registry,
        )

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``, in Prometheus's text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
