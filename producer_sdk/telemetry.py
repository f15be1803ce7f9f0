"""Exporting the client's own spans and metrics, when its caller asks: importing the SDK
never sets up OpenTelemetry (docs/decisions/0033)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.errors import ConfigError

if TYPE_CHECKING:
    from transport.telemetry_export import TelemetryExport


def export_telemetry(service_name: str) -> TelemetryExport | None:
    """Set up the OpenTelemetry SDK with OTLP export as the standard ``OTEL_*`` variables
    say, as a worker does, for an application that sets up none of its own; the service
    is ``service_name`` unless ``OTEL_SERVICE_NAME`` names it. Call it before building a
    ``FleetClient``: a client asks once, when built, whether the process traces.

    None when the variables ask for no export (nothing is set up then). Shut the result
    down at exit to send what is still buffered. Needs the ``telemetry`` extra."""
    try:
        from transport.telemetry_export import configure_from_env
    except ImportError as exc:
        raise ConfigError(
            "exporting telemetry needs the OpenTelemetry SDK and its OTLP exporter: "
            "install ai-job-fleet[telemetry]"
        ) from exc
    return configure_from_env(service_name)
