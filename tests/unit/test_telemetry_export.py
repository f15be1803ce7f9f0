"""OTLP export set up from the standard OTEL_* variables: what turns it on, what is refused,
and the SDK's explicit call, which exports the client's producer spans."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from opentelemetry import metrics, trace

from contracts.errors import ConfigError
from tests.conftest import REPO
from tests.integration.otlp_receiver import OtlpReceiver, attributes
from transport.telemetry_export import (
    Signal,
    configure_from_env,
    export_requested,
    exporters_for,
)


@pytest.mark.parametrize(
    ("environ", "requested"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "svc", "OTEL_RESOURCE_ATTRIBUTES": "a=b"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_METRICS_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_what_asks_for_export(environ: dict[str, str], requested: bool) -> None:
    assert export_requested(environ) is requested


def test_each_signal_exports_as_its_variable_says() -> None:
    assert exporters_for("traces", {}) == ["otlp"]
    assert exporters_for("traces", {"OTEL_TRACES_EXPORTER": "otlp, console"}) == [
        "otlp",
        "console",
    ]
    assert exporters_for("metrics", {"OTEL_METRICS_EXPORTER": "none"}) == []
    specific = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
    }
    assert exporters_for("metrics", specific) == ["otlp"]  # the signal's own variable wins


@pytest.mark.parametrize(
    ("signal", "environ", "named"),
    [
        ("traces", {"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        ("metrics", {"OTEL_METRICS_EXPORTER": "otlp,prometheus"}, "prometheus"),
        ("traces", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"),
        ("traces", {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "http/json"),
    ],
)
def test_what_the_fleet_cannot_export_is_refused(
    signal: Signal, environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        exporters_for(signal, environ)


def test_without_variables_nothing_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "named-only")
    # The suite's one process may have set them (test_trace_e2e): what matters is no change.
    before = (trace.get_tracer_provider(), metrics.get_meter_provider())
    assert configure_from_env("fleet-worker-test") is None
    assert (trace.get_tracer_provider(), metrics.get_meter_provider()) == before


SDK_CALLER = """
import producer_sdk
from transport.tracing import ProducerSpans, tracing_configured

assert not tracing_configured(), "importing the SDK set up OpenTelemetry"
export = producer_sdk.export_telemetry("named-by-the-code")
assert export is not None and tracing_configured()
spans = ProducerSpans()
with spans.send("orders.v1.generate.requests", "order-42", 17):
    pass
try:
    with spans.send("orders.v1.generate.requests", "order-43", 17):
        raise TimeoutError("broker at 10.0.0.7:9092 did not answer")
except TimeoutError:
    pass
export.shutdown()
"""


def test_the_sdk_exports_its_producer_spans_when_its_caller_asks() -> None:
    with OtlpReceiver() as otlp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_SERVICE_NAME": "checkout-service",  # the operator's name wins
            "PYTHONPATH": str(REPO),
        }
        subprocess.run([sys.executable, "-c", SDK_CALLER], cwd=REPO, env=env, check=True)
        received = otlp.spans()
        assert otlp.received.refused == []
    assert [service for service, _ in received] == ["checkout-service"] * 2
    sent, failed = (span for _, span in received)
    assert sent.name == "send orders.v1.generate.requests"
    assert sent.kind == sent.SPAN_KIND_PRODUCER
    assert attributes(sent) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "orders.v1.generate.requests",
        "messaging.kafka.message.key": "order-42",
        "messaging.message.body.size": 17,
    }
    assert attributes(failed)["error.type"] == "builtins.TimeoutError"
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    assert "10.0.0.7" not in str(failed)  # the error's text stays with its raiser
