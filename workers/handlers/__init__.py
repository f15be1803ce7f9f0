"""One handler per job kind, found by kind in a registry: each turns a typed request into
reply chunks and knows which providers it needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from providers.shared import Shared
from workers.handlers import embed, generate, rerank, speech, transcribe, vectors
from workers.handlers.base import JobHandler
from workers.metrics import WorkerMetrics
from workers.settings import WorkerSettings

HandlerBuilder = Callable[
    [WorkerSettings, Shared, WorkerMetrics | None], Awaitable[JobHandler[Any]]
]

HANDLER_BUILDERS: Final[dict[str, HandlerBuilder]] = {
    "generate": generate.build,
    "embed": embed.build,
    "transcribe": transcribe.build,
    "vectors": vectors.build,
    "rerank": rerank.build,
    "speech": speech.build,
}


async def build_handler(
    kind: str, settings: WorkerSettings, shared: Shared, metrics: WorkerMetrics | None = None
) -> JobHandler[Any]:
    """The handler of one job kind with its providers created (handed what the process
    shares) and loaded."""
    builder = HANDLER_BUILDERS.get(kind)
    if builder is None:
        known = ", ".join(HANDLER_BUILDERS)
        raise ValueError(f"unknown worker kind {kind!r}; expected one of {known}")
    return await builder(settings, shared, metrics)


__all__ = ["HANDLER_BUILDERS", "HandlerBuilder", "JobHandler", "build_handler"]
