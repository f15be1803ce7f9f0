"""The coordinator's settings: the ``[batch]`` table of the worker settings."""

from __future__ import annotations

from typing import Annotated

import msgspec


class BatchSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Requests of one batch in flight on the batch lane at once.
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 16
    # Batches one coordinator runs at once; more wait (on their partitions) for a free one.
    max_batches: Annotated[int, msgspec.Meta(ge=1)] = 8
    # An embed request of a batch holds at most this many rows and characters: large enough
    # that a request's own cost (ledger, reply) is small beside its model time, small enough
    # that its answer stays a few hundred kB (bench/batch_jobs.py measured 64 and 256).
    embed_chunk_rows: Annotated[int, msgspec.Meta(ge=1, le=2048)] = 256
    embed_chunk_chars: Annotated[int, msgspec.Meta(ge=1)] = 64_000
    # How long the coordinator waits for one request's answer (the fleet retries provider
    # failures itself before it answers with an error).
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 900.0
    # How often a running batch's request counts are published.
    status_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    # How long the broker keeps a batch's input and output topics (its results are
    # downloadable this long after it was submitted).
    retention_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0
