"""The job consumer: each fetched job runs through the runner beside the fetch loop.

It is a member of the shared group loop (``transport/group.py``), which fetches and
commits. Jobs run as tasks, as many at once as the lane gate gives the consumer's lane room
for, so a long model call never holds up the fetch loop. Beyond that room it fetches a
window more, which waits in a fair queue: each freed slot goes to the tenant whose turn it
is (``workers/runtime/fair_queue.py``, decision 0044). A tenant's records beyond its share
of the window are parked (``workers/parking.py``, decision 0045), so that the log moves on
to the other tenants' records behind them. With neither room nor window left the loop keeps
polling with its partitions paused. Offsets are committed only up to the oldest
unfinished (or waiting) job of each partition: at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sized

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from contracts.codec import decode_deadline_ms
from contracts.names import Header, Lane
from transport.group import GroupLoop
from transport.records import Record
from workers.fairness_board import LaneState, TenantState
from workers.metrics import TenantTotals, WorkerMetrics
from workers.parking import ParkingLot
from workers.runtime.fair_queue import FairQueue
from workers.runtime.lanes import LaneGate
from workers.runtime.runner import JobRunner
from workers.runtime.window_shares import WindowShares
from workers.settings import EQUAL_SHARES, FairnessSettings

log = logging.getLogger(__name__)

# A job whose run failed (no reply could be sent) runs again after this, doubling up to
# the maximum; a runner bug gets this many runs.
RERUN_FIRST_S = 0.5
RERUN_MAX_S = 10.0
RUNNER_BUG_TRIES = 3
# What the broker refuses for its size: however often the job runs, the same is refused.
_NEVER_FITS = (MessageSizeTooLargeError, RecordListTooLargeError)
# Copies being parked at once, at most: enough that the fetch loop gets past a burst of a
# flooding tenant's records (its parked ones come back together) in about one round trip
# to the broker, few enough to bound what a slow broker leaves in memory.
PARKING_AT_ONCE = 64
# A fetched record and its partition.
_Fetched = tuple[TopicPartition, Record]


def _tenant_and_cost(record: Record) -> tuple[str, int]:
    """The tenant and estimated cost the producer stamped on ``record`` (decision 0044): a
    record without them (an older producer) is the tenant "" and costs one."""
    tenant, cost = "", 1
    for key, value in record.headers:
        if key == Header.TENANT:
            tenant = bytes(value).decode(errors="replace")
        elif key == Header.COST:
            with contextlib.suppress(ValueError):
                cost = max(int(value), 1)
    return tenant, cost


def _staying(tp: TopicPartition) -> bool:
    return False


def _past_deadline(record: Record) -> bool:
    deadline_ms = decode_deadline_ms(record.value or b"")
    return deadline_ms is not None and deadline_ms < time.time() * 1000


class _LaneRoom:
    """What the consume loop may fetch for one lane: its free slots in the gate, and what
    is left of its window of waiting jobs; none while ``PARKING_AT_ONCE`` copies are being
    parked."""

    def __init__(
        self, gate: LaneGate, lane: Lane, waiting: FairQueue[_Fetched], parks: Sized, window: int
    ):
        self._gate = gate
        self._lane: Lane = lane
        self._waiting = waiting
        self._parks = parks
        self._window = window

    def room(self) -> int:
        if len(self._parks) >= PARKING_AT_ONCE:
            return 0
        return max(self._gate.room(self._lane) + self._window - len(self._waiting), 0)

    def watch(self) -> asyncio.Event:
        return self._gate.watch()

    async def wait(self, change: asyncio.Event, timeout_s: float) -> None:
        await LaneGate.wait(change, timeout_s)


class JobConsumer:
    """Runs each fetched job through the runner as a task, on the shared group loop."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        topic: str,
        runner: JobRunner,
        gate: LaneGate,
        lane: Lane = "interactive",
        commit_interval_s: float = 0.2,
        shutdown_grace_s: float = 30.0,
        keep_jobs_on_revoke: bool = False,
        metrics: WorkerMetrics,
        fairness: FairnessSettings = EQUAL_SHARES,
        parking: ParkingLot | None = None,
    ) -> None:
        self._runner = runner
        self._gate = gate
        self.lane: Lane = lane
        self._shutdown_grace_s = shutdown_grace_s
        self._keep_jobs_on_revoke = keep_jobs_on_revoke
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        # Jobs running, per tenant: such a tenant is active on the lane (its share counts).
        self._running: Counter[str] = Counter()
        self._waiting: FairQueue[_Fetched] = FairQueue(
            fairness.weights, default_weight=fairness.default_weight
        )
        self._metrics = metrics
        self._slots = gate.slots if lane == "interactive" else gate.batch_limit
        self._window = fairness.window_for(self._slots)
        # None: nothing is parked (parking off, or no window to hold a share of).
        self._parking = parking if self._window else None
        self._shares = WindowShares(self._window, self._waiting.weight)
        # Copies being parked, by partition: unfinished until the broker has them.
        self._parks: dict[asyncio.Task[None], TopicPartition] = {}
        # The partitions being let go (while ``release`` runs): a park of theirs that fails
        # leaves its record to their next owner rather than waiting here.
        self._leaving: Callable[[TopicPartition], bool] = _staying
        self._loop = GroupLoop(
            consumer,
            [topic],
            self,
            room=_LaneRoom(gate, lane, self._waiting, self._parks, self._window),
            commit_interval_s=commit_interval_s,
        )
        self.ready = self._loop.ready  # set once the first partitions are assigned

    @property
    def runner(self) -> JobRunner:
        return self._runner

    @property
    def revocations(self) -> int:
        """Rebalances that took partitions away from this consumer."""
        return self._loop.revocations

    def stop(self) -> None:
        """Stop fetching; ``run`` then finishes in-flight jobs, commits and returns."""
        self._loop.stop()
        self._gate.notify()

    async def run(self) -> None:
        starter = asyncio.create_task(self._start_when_room(), name=f"{self.lane}-starter")
        try:
            await self._loop.run()
        finally:
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starter

    def fetch_stalled_s(self) -> float:
        """Seconds since the fetch loop last came round (it does at least once a second)."""
        return self._loop.stalled_s()

    async def lag(self) -> dict[int, int]:
        return await self._loop.lag()

    def lane_state(self) -> LaneState:
        """This lane's slots, window and tenants, for `fleet status --fairness`."""
        queued, credit = self._waiting.queued(), self._waiting.credit()
        seen = self._metrics.tenants(self.lane)
        nothing = TenantTotals(in_flight=0, served=0.0, parked=0, waited=0)
        tenants = [
            TenantState(
                tenant=tenant,
                weight=self._waiting.weight(tenant),
                queued=queued.get(tenant, 0),
                in_flight=totals.in_flight,
                credit=credit.get(tenant, 0.0),
                served=totals.served,
                parked=totals.parked,
                waited=totals.waited,
            )
            for tenant in sorted(seen.keys() | queued.keys())
            for totals in [seen.get(tenant, nothing)]
        ]
        return LaneState(
            lane=self.lane,
            slots=self._slots,
            window=self._window,
            running=self._gate.running(self.lane),
            tenants=tenants,
        )

    def take(self, tp: TopicPartition, record: Record) -> None:
        # Unfinished from now on, waiting or not: no commit passes it.
        self._loop.started(tp, record.offset)
        tenant, cost = _tenant_and_cost(record)
        if self._parking is not None:
            self._shares.seen(tenant, time.monotonic())
        if not self._waiting and self._gate.room(self.lane) > 0:
            self._start(tenant, cost, (tp, record))  # not saturated: no queue at all
            return
        if (
            self._parking is not None
            and self._shares.beyond_share(
                tenant,
                self._waiting.waiting(tenant),
                self._running.keys() | self._waiting.tenants(),
            )
            and not _past_deadline(record)  # it starts, and ends with `timeout`, here
        ):
            task = asyncio.create_task(
                self._park(self._parking, tp, record, tenant, cost),
                name=f"park-{tp.partition}-{record.offset}",
            )
            self._parks[task] = tp
            return
        self._wait(tenant, cost, (tp, record))

    def _wait(self, tenant: str, cost: int, fetched: _Fetched) -> None:
        self._waiting.push(tenant, cost, fetched)
        children = self._metrics.tenant(self.lane, tenant)
        children.queued.inc()
        children.waited.inc()
        self._start_waiting()

    async def _park(
        self, parking: ParkingLot, tp: TopicPartition, record: Record, tenant: str, cost: int
    ) -> None:
        """Park the record; only once the broker has its copy is it finished here (so its
        offset may be committed). Cancelled (a shutdown past its grace period): never
        finished, so it is fetched again. Not taken: it waits its turn here instead; a copy
        reported failed may have been stored after all, and the ledger runs its request id
        once."""
        try:
            await parking.park(record, self.lane)
        except KafkaError as exc:
            if self._leaving(tp):
                return  # its partition is let go: fetched again by its next owner
            log.warning("could not park %s@%d (%r): it waits here", tp, record.offset, exc)
            self._wait(tenant, cost, (tp, record))
            return
        finally:
            self._parks.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._gate.notify()  # the fetch loop has room again
        self._metrics.tenant(self.lane, tenant).parked.inc()
        self._loop.finished(tp, record.offset)

    def _start_waiting(self) -> None:
        """Start waiting jobs, the fair queue's choice first, while the lane has room."""
        while self._waiting and self._gate.room(self.lane) > 0 and not self._loop.stopping:
            tenant, cost, fetched = self._waiting.pop()
            self._metrics.tenant(self.lane, tenant).queued.dec()
            self._start(tenant, cost, fetched)

    async def _start_when_room(self) -> None:
        """A job of either lane ended (or a consumer stops): start what now fits."""
        while True:
            change = self._gate.watch()
            self._start_waiting()
            await change.wait()

    def _start(self, tenant: str, cost: int, fetched: _Fetched) -> None:
        tp, record = fetched
        self._gate.started(self.lane)
        task = asyncio.create_task(
            self._run_job(tp, record, tenant, cost), name=f"job-{tp.partition}-{record.offset}"
        )
        self._tasks[task] = tp

    async def _run_job(self, tp: TopicPartition, record: Record, tenant: str, cost: int) -> None:
        metrics = self._metrics.tenant(self.lane, tenant)
        metrics.in_flight.inc()
        self._running[tenant] += 1
        try:
            await self._run_until_it_ends(tp, record)
        finally:
            self._running[tenant] -= 1
            if not self._running[tenant]:
                del self._running[tenant]
            # Cancelled: handed back (a rebalance, a shutdown), so never marked finished.
            self._tasks.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._gate.finished(self.lane)
            metrics.in_flight.dec()
        metrics.served.inc(cost)
        self._loop.finished(tp, record.offset)

    async def _run_until_it_ends(self, tp: TopicPartition, record: Record) -> None:
        """Run the job until it ends: answered, parked for a retry or dead-lettered. A run
        that fails could not even send an error reply (the broker is away): it runs again
        after a backoff, the ledger keeping it once-only, so the job ends when the broker is
        back instead of holding its partition's commits; unless the broker refused a message
        for its size, which no later run changes: the job is given up at once, loudly. Any
        other failure is a bug in the runner: after ``RUNNER_BUG_TRIES`` runs the job is
        given up, loudly, and its partition goes on committing."""
        where = f"{tp.topic}[{tp.partition}]@{record.offset}"
        delay, bugs, failed = RERUN_FIRST_S, 0, False
        while True:
            try:
                await self._runner.run(record, self.lane)
            except KafkaError as exc:
                if isinstance(exc, _NEVER_FITS):
                    # The runner cuts its dead letters to size, so this is a message it did
                    # not expect to be refused; a later run would send the same one.
                    log.error(
                        "job at %s given up: the broker refused it for its size: %s", where, exc
                    )
                    return
                if not failed:
                    log.warning("job at %s could not end (%s): running it again", where, exc)
                failed = True
            except Exception:
                bugs += 1
                if bugs >= RUNNER_BUG_TRIES:
                    log.exception("job at %s failed %d times: given up", where, bugs)
                    return
                log.exception("job at %s failed: running it again", where)
            else:
                if failed:
                    log.info("job at %s ended after the broker came back", where)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RERUN_MAX_S)

    async def _drain(self, tasks: list[asyncio.Task[None]], grace_s: float) -> None:
        """Let jobs finish within the grace period; cancel (hand back) the rest."""
        if not tasks:
            return
        _, still_running = await asyncio.wait(tasks, timeout=grace_s)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)

    async def release(self, partitions: set[TopicPartition] | None) -> None:
        """Shutting down (None): running jobs finish within the grace period, the rest
        are handed back. Partitions move (a worker joined or left): with the ledger, jobs
        running here keep running: whoever gets the partition fetches their records again,
        finds them held in the ledger and waits for their answers, so a long model call is
        never restarted by a rebalance, and the group does not wait for it either. Without
        the ledger nothing would stop a second run, so running jobs finish (or, past the
        grace period, are handed back) first."""

        def leaving(tp: TopicPartition) -> bool:
            return partitions is None or tp in partitions

        self._leaving = leaving
        try:
            # Jobs not started yet are let go: never marked finished, so the partition's
            # next owner (or this worker, restarted) fetches them again.
            for _, record in self._waiting.drop(lambda f: leaving(f[0])):
                self._metrics.tenant(self.lane, _tenant_and_cost(record)[0]).queued.dec()
            # Copies being parked: those the broker takes in the grace period are finished
            # (their offsets are committed next); the rest are cancelled, never finished,
            # and fetched again, as is a copy refused now (it is not kept here).
            grace_ends = time.monotonic() + self._shutdown_grace_s
            await self._drain(
                [t for t, tp in self._parks.items() if leaving(tp)], self._shutdown_grace_s
            )
            grace_s = max(grace_ends - time.monotonic(), 0.0)
            if partitions is None:
                await self._drain(list(self._tasks), grace_s)
            elif not self._keep_jobs_on_revoke:
                await self._drain([t for t, tp in self._tasks.items() if tp in partitions], grace_s)
        finally:
            self._leaving = _staying
