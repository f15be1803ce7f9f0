"""The links that watch a job without changing it: its trace span and its metrics."""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from transport.tracing import extract_context, tracing_configured
from workers.metrics import WorkerMetrics
from workers.runtime.links.chain import Job, Link

_tracer = trace.get_tracer("ai_job_fleet.workers")


class Traced(Link):
    """A consumer span around the job, continuing the producer's trace, when the process set
    up OpenTelemetry before it built its worker (as ``opentelemetry-instrument`` does):
    asked once here, since asking costs two environment lookups."""

    def __init__(self) -> None:
        self._on = tracing_configured()

    async def __call__(self, job: Job) -> None:
        if not self._on:
            await self.call_next(job)
            return
        record = job.record
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
        }
        with _tracer.start_as_current_span(
            f"process {record.topic}",
            context=extract_context(record.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ):
            await self.call_next(job)


class Metered(Link):
    """Jobs in flight, and the duration of those that ended with a final reply."""

    def __init__(self, metrics: WorkerMetrics, kind: str) -> None:
        # Label lookups take a lock and a dict probe: done once, not per job.
        self._in_flight = metrics.in_flight.labels(kind)
        self._duration = metrics.duration.labels(kind)

    async def __call__(self, job: Job) -> None:
        job.started = time.perf_counter()
        self._in_flight.inc()
        try:
            await self.call_next(job)
        finally:
            self._in_flight.dec()
        if job.final is not None:
            self._duration.observe(time.perf_counter() - job.started)
