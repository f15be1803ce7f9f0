"""The shape of the job runner: one ``Job`` passed down a chain of links.

A link does one thing around the rest of the chain (FastStream's ``consume_scope(call_next,
msg)``): it may answer the job itself and stop, or call ``self.call_next(job)`` and act on
what the inner links left in the job. Each link holds its successor, so running the chain
costs one coroutine frame per link and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from contracts.codec import AnyRequest
from contracts.names import Lane
from contracts.replies import Final
from transport.records import Record
from workers.handlers.reply_stream import ChunkStamper, ReplyStream

Next = Callable[["Job"], Awaitable[None]]


class Job:
    """One delivery of one record, filled in as it goes down the chain."""

    __slots__ = (
        "content_type",
        "final",
        "lane",
        "record",
        "request",
        "stamper",
        "started",
        "stream",
    )

    def __init__(self, record: Record, lane: Lane = "interactive") -> None:
        self.record = record
        # Which lane's consumer fetched it: the handler gives interactive work priority, and
        # a retry brings the job back on the same lane.
        self.lane: Lane = lane
        self.content_type = ""
        # Set by the decode link; the links after it may rely on them.
        self.request: AnyRequest = None  # type: ignore[assignment]
        self.stream: ReplyStream = None  # type: ignore[assignment]
        self.stamper: ChunkStamper = None  # type: ignore[assignment]
        self.started = 0.0  # perf_counter when the handler started
        # The final chunk sent to the caller; None when there is none (yet), or when the
        # job was parked for a retry.
        self.final: Final | None = None

    @property
    def where(self) -> str:
        r = self.record
        return f"{r.topic}[{r.partition}]@{r.offset}"


class Link:
    """One step around the rest of the chain, which it calls as ``self.call_next(job)``
    (set by ``chain``)."""

    call_next: Next

    async def __call__(self, job: Job) -> None:
        raise NotImplementedError


def chain(links: Sequence[Link], last: Next) -> Next:
    """``links[0]`` around ``links[1]`` around ... around ``last``."""
    call = last
    for link in reversed(links):
        link.call_next = call
        call = link
    return call
