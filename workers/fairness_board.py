"""Where each worker keeps its lanes' tenant and fairness state, for `fleet status
--fairness` (docs/decisions/0044-fair-queuing-in-a-lane.md).

One Redis hash per kind, a field per worker process: the state of its lanes and when it was
written. A worker writes its own every few seconds and removes it when it stops; a reader
leaves out what is older than ``STALE_S`` (a worker that died without removing it). One key
per kind keeps the read a single HGETALL on Redis Cluster too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from providers.redis_client import REDIS_FAILURES, RedisClient

log = logging.getLogger(__name__)

WRITE_EVERY_S: Final = 2.0
# A worker's state older than this is left out (it stopped without removing it).
STALE_S: Final = 10.0
# The hash goes when no worker of the kind has written it for this long.
KEY_TTL_S: Final = 60


class TenantState(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str  # "" for records that name none (an older producer)
    weight: float
    queued: int  # fetched, waiting for a slot
    in_flight: int
    credit: float  # the fair queue's credit, in cost units (0 when nothing waits)
    served: float  # estimated cost of the jobs that ended (contracts/job_cost.py)
    parked: int = 0  # records parked beyond its share of the window (decision 0045)
    waited: int = 0  # jobs that waited in the fair queue for a slot, since the worker began


class LaneState(msgspec.Struct, frozen=True, kw_only=True):
    lane: str
    slots: int
    window: int  # records fetched beyond the free slots at most
    running: int
    tenants: list[TenantState]


class WorkerFairness(msgspec.Struct, frozen=True, kw_only=True):
    worker: str  # host:pid
    kind: str
    written_ms: int
    lanes: list[LaneState]


def board_key(namespace: str, kind: str) -> str:
    return f"fleet:{namespace}:fairness:{kind}"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def keep_posted(
    redis: RedisClient,
    namespace: str,
    kind: str,
    lanes: Callable[[], Sequence[LaneState]],
    stopping: asyncio.Event,
    *,
    every_s: float = WRITE_EVERY_S,
) -> None:
    """Write this worker's state every ``every_s`` until ``stopping`` is set, then remove
    it. (An event, not cancellation: a Redis command cancelled half-way can leave its
    connection for the next one to wait on.) Redis away costs a warning, never the worker."""
    key, worker = board_key(namespace, kind), worker_name()
    warned = False
    while not stopping.is_set():
        state = WorkerFairness(
            worker=worker, kind=kind, written_ms=int(time.time() * 1000), lanes=list(lanes())
        )
        try:
            await redis.hset(key, worker, msgspec.json.encode(state))
            await redis.expire(key, KEY_TTL_S)
            warned = False
        except REDIS_FAILURES as exc:
            if not warned:  # once per outage: no job depends on it
                log.warning("could not post the fairness state to Redis: %s", exc)
            warned = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=every_s)
    with contextlib.suppress(*REDIS_FAILURES):
        await redis.hdel(key, worker)


async def read_board(redis: RedisClient, namespace: str, kind: str) -> list[WorkerFairness]:
    """The state of each live worker of ``kind``, by worker name."""
    fields = await redis.hgetall(board_key(namespace, kind))
    oldest_ms = (time.time() - STALE_S) * 1000
    states = [msgspec.json.decode(raw, type=WorkerFairness) for raw in fields.values()]
    return sorted((s for s in states if s.written_ms >= oldest_ms), key=lambda s: s.worker)


def render(states: Sequence[WorkerFairness]) -> str:
    """One line per tenant of each lane of each worker."""
    lines = [
        f"{'kind':<10} {'worker':<28} {'lane':<11} {'tenant':<16} {'weight':>6} {'queued':>6} "
        f"{'running':>7} {'credit':>8} {'served':>12} {'parked':>8} {'waited':>8}"
    ]
    for state in states:
        for lane in state.lanes:
            head = f"{state.kind:<10} {state.worker[:28]:<28} {lane.lane:<11}"
            if not lane.tenants:
                lines.append(f"{head} {'(idle)':<16}")
            for t in lane.tenants:
                lines.append(
                    f"{head} {t.tenant or '-':<16} {t.weight:>6g} {t.queued:>6} "
                    f"{t.in_flight:>7} {t.credit:>8.0f} {t.served:>12.0f} {t.parked:>8} "
                    f"{t.waited:>8}"
                )
    return "\n".join(lines)
