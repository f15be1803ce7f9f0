"""The OpenTelemetry SDK set up from the standard ``OTEL_*`` variables, exporting traces and
metrics over OTLP/HTTP: what every worker does at start, and what an SDK caller asks for with
``producer_sdk.export_telemetry()``. Importing it configures nothing (docs/decisions/0033).

Export is on once a variable names an exporter or an OTLP endpoint; ``OTEL_SDK_DISABLED=true``
turns it off again. The exporters, processors and sampler read their own variables
(``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_BSP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``,
``OTEL_TRACES_SAMPLER``, ...), as the OpenTelemetry SDK documents them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Final, Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from contracts.errors import ConfigError

log = logging.getLogger(__name__)

Signal = Literal["traces", "metrics"]

# Any of these set (and not "none") asks for export; a service name alone does not.
_ASKING: Final = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
_EXPORTERS: Final = ("otlp", "console", "none")
# The exporter installed: the SDK's default protocol. grpc would pull in grpcio, http/json
# has no Python exporter.
_PROTOCOL: Final = "http/protobuf"


def export_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the variables ask for export at all (cheap: no SDK is built)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() not in ("", "none") for name in _ASKING)


def exporters_for(signal: Signal, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters ``OTEL_<SIGNAL>_EXPORTER`` names (a comma-separated list; ``otlp`` when
    unset), without ``none``; ConfigError for one this fleet cannot run."""
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    names = [n.strip() for n in environ.get(variable, "otlp").split(",") if n.strip()]
    unknown = [n for n in names if n not in _EXPORTERS]
    if unknown:
        raise ConfigError(
            f"{variable}={environ[variable]!r}: {', '.join(unknown)} is not an exporter this "
            f"fleet has; use {', '.join(_EXPORTERS)}"
        )
    if "otlp" in names:
        _check_protocol(signal, environ)
    return [n for n in names if n != "none"]


def _check_protocol(signal: Signal, environ: Mapping[str, str]) -> None:
    for variable in (
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        value = environ.get(variable, "").strip()
        if value:
            if value != _PROTOCOL:
                raise ConfigError(
                    f"{variable}={value!r}: this fleet exports OTLP over {_PROTOCOL} only "
                    "(point it at the collector's HTTP port, 4318 by default)"
                )
            return


class TelemetryExport:
    """The SDK providers this process installed. ``shutdown`` once at exit sends what the
    processors still hold; ``force_flush`` sends it now."""

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider

    def force_flush(self, timeout_ms: int = 10_000) -> bool:
        flushed = True
        if self.tracer_provider is not None:
            flushed = self.tracer_provider.force_flush(timeout_ms) and flushed
        if self.meter_provider is not None:
            flushed = self.meter_provider.force_flush(timeout_ms) and flushed
        return flushed

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def configure_from_env(service_name: str) -> TelemetryExport | None:
    """Install the global tracer and meter providers the ``OTEL_*`` variables ask for, named
    ``service_name`` unless ``OTEL_SERVICE_NAME`` (or ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES``) names the service. None when nothing is asked for, the SDK
    is disabled, or the process set up its own providers before (those are kept).

    Call it before building anything that asks ``tracing_configured``; ConfigError for a
    variable this fleet cannot honour, before anything is installed."""
    if not export_requested():
        return None
    traces, metered = exporters_for("traces"), exporters_for("metrics")
    span_exporters = [_span_exporter(name) for name in traces]
    metric_exporters = [_metric_exporter(name) for name in metered]
    # The variables win over the name the caller gives.
    resource = Resource.create({SERVICE_NAME: service_name}).merge(OTELResourceDetector().detect())
    export = TelemetryExport(
        _tracer_provider(resource, span_exporters), _meter_provider(resource, metric_exporters)
    )
    if export.tracer_provider is None and export.meter_provider is None:
        return None
    log.info(
        "OpenTelemetry export of %s: traces to %s, metrics to %s",
        resource.attributes[SERVICE_NAME],
        ", ".join(traces) if export.tracer_provider else "nowhere",
        ", ".join(metered) if export.meter_provider else "nowhere",
    )
    return export


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Loaded only when asked for: it brings requests and protobuf.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _metric_exporter(name: str) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def _tracer_provider(resource: Resource, exporters: list[SpanExporter]) -> TracerProvider | None:
    if not exporters:
        return None
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:  # set before: the API logged it
        provider.shutdown()
        return None
    return provider


def _meter_provider(resource: Resource, exporters: list[MetricExporter]) -> MeterProvider | None:
    if not exporters:
        return None
    readers = [PeriodicExportingMetricReader(exporter) for exporter in exporters]
    provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(provider)
    if metrics.get_meter_provider() is not provider:
        provider.shutdown()
        return None
    return provider
