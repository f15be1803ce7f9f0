"""The end of the chain: the kind's handler, its chunks sent as they come."""

from __future__ import annotations

import time
from typing import Any

from contracts.replies import EmbedResult, Final, GenerateResult, ReplyChunk
from workers.handlers import JobHandler
from workers.job_costs import cost_usd
from workers.metrics import Outcome, WorkerMetrics
from workers.runtime.links.chain import Job


class RunHandler:
    """The end of the chain: the handler turns the request into chunks, sent as they come."""

    def __init__(self, handler: JobHandler[Any], metrics: WorkerMetrics, kind: str) -> None:
        self._handler = handler
        self._metrics = metrics
        self._kind = kind
        self._first_chunk = metrics.first_chunk.labels(kind)
        self._input_tokens = metrics.tokens.labels(kind, "input")
        self._output_tokens = metrics.tokens.labels(kind, "output")

    async def __call__(self, job: Job) -> None:
        last: ReplyChunk | None = None
        async for chunk in self._handler.handle(job.request, job.stamper, lane=job.lane):
            if last is None:
                self._first_chunk.observe(time.perf_counter() - job.started)
            await job.stream.send(chunk)
            last = chunk
        if not isinstance(last, Final):
            raise RuntimeError(f"the {self._kind} handler ended without a final chunk")
        self._metrics.outcome(Outcome.OK)
        if isinstance(last, GenerateResult | EmbedResult):
            self._input_tokens.inc(last.usage.prompt_tokens)
            self._output_tokens.inc(last.usage.completion_tokens)
        spent = cost_usd(last)
        if spent:
            self._metrics.tenant_spent(job.request.tenant, spent)
        job.final = last
