"""The consume loop: fetch, run jobs beside the fetch loop, commit what is finished.

Jobs run as tasks, as many at once as the lane gate gives the consumer's lane room for, so a
long model call never holds up the fetch loop. Without room the consumer keeps polling with
its partitions paused (a consumer that stops polling for max.poll.interval loses its group
membership). Offsets are committed only up to the oldest unfinished job of each partition:
at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from contracts.names import Lane
from transport.commits import OffsetTracker
from transport.records import Record
from workers.runtime.lanes import LaneGate
from workers.runtime.runner import JobRunner

log = logging.getLogger(__name__)

# A job whose run failed (no reply could be sent) runs again after this, doubling up to
# the maximum; a runner bug gets this many runs.
RERUN_FIRST_S = 0.5
RERUN_MAX_S = 10.0
RUNNER_BUG_TRIES = 3


async def commit_finished(
    consumer: AIOKafkaConsumer,
    tracker: OffsetTracker[TopicPartition],
    partitions: list[TopicPartition] | None = None,
) -> None:
    """Commit what ``tracker`` says is finished, of the partitions ``consumer`` still owns
    (of ``partitions`` only, when given). A commit that fails is tried at the next call."""
    owned = consumer.assignment()
    offsets = {tp: offset for tp, offset in tracker.committable(partitions).items() if tp in owned}
    if not offsets:
        return
    try:
        await consumer.commit(offsets)
    except KafkaError as exc:
        log.warning("commit of %s failed: %s", offsets, exc)
        return
    tracker.committed(offsets)


class JobConsumer:
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
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._runner = runner
        self._gate = gate
        self.lane: Lane = lane
        self._commit_interval_s = commit_interval_s
        self._shutdown_grace_s = shutdown_grace_s
        self._keep_jobs_on_revoke = keep_jobs_on_revoke
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set once the first partitions are assigned
        self._last_fetch = time.monotonic()
        self.revocations = 0  # rebalances that took partitions away from this consumer

    @property
    def runner(self) -> JobRunner:
        return self._runner

    def stop(self) -> None:
        """Stop fetching; ``run`` then finishes in-flight jobs, commits and returns."""
        self._stopping.set()
        self._gate.notify()

    async def run(self) -> None:
        self._consumer.subscribe([self._topic], listener=_Rebalance(self))
        committer = asyncio.create_task(self._commit_periodically(), name="committer")
        try:
            await self._fetch_loop()
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._drain(list(self._tasks), self._shutdown_grace_s)
            await self._commit()

    def fetch_stalled_s(self) -> float:
        """Seconds since the fetch loop last came round (it does at least once a second)."""
        return time.monotonic() - self._last_fetch

    async def _fetch_loop(self) -> None:
        while not self._stopping.is_set():
            self._last_fetch = time.monotonic()
            change = self._gate.watch()
            room = self._gate.room(self.lane)
            if room <= 0:
                await self._hold(change)
                continue
            if paused := self._consumer.paused():
                self._consumer.resume(*paused)
            batches = await self._consumer.getmany(timeout_ms=200, max_records=room)
            for tp, records in batches.items():
                for record in records:
                    self._start(tp, record)

    async def _hold(self, change: asyncio.Event) -> None:
        """No room: poll with every partition paused, then wait (a second at most, which
        keeps the poll interval short) for a job to end. A partition assigned since the
        pause is not paused yet: what it returns is put back, to be fetched again."""
        self._consumer.pause(*self._consumer.assignment())
        for tp, records in (await self._consumer.getmany(timeout_ms=0)).items():
            if records:
                self._consumer.seek(tp, records[0].offset)
        await LaneGate.wait(change, 1.0)

    def _start(self, tp: TopicPartition, record: Record) -> None:
        self._gate.started(self.lane)
        self._tracker.started(tp, record.offset)
        task = asyncio.create_task(
            self._run_job(tp, record), name=f"job-{tp.partition}-{record.offset}"
        )
        self._tasks[task] = tp

    async def _run_job(self, tp: TopicPartition, record: Record) -> None:
        try:
            await self._run_until_it_ends(tp, record)
        finally:
            # Cancelled: handed back (a rebalance, a shutdown), so never marked finished.
            self._tasks.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._gate.finished(self.lane)
        self._tracker.finished(tp, record.offset)

    async def _run_until_it_ends(self, tp: TopicPartition, record: Record) -> None:
        """Run the job until it ends: answered, parked for a retry or dead-lettered. A run
        that fails could not even send an error reply (the broker is away): it runs again
        after a backoff, the ledger keeping it once-only, so the job ends when the broker is
        back instead of holding its partition's commits. Any other failure is a bug in the
        runner: after ``RUNNER_BUG_TRIES`` runs the job is given up, loudly, and its
        partition goes on committing."""
        where = f"{tp.topic}[{tp.partition}]@{record.offset}"
        delay, bugs, failed = RERUN_FIRST_S, 0, False
        while True:
            try:
                await self._runner.run(record, self.lane)
            except KafkaError as exc:
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

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval_s)
            await self._commit()

    async def _commit(self, partitions: list[TopicPartition] | None = None) -> None:
        await commit_finished(self._consumer, self._tracker, partitions)

    async def _drain(self, tasks: list[asyncio.Task[None]], grace_s: float) -> None:
        """Let jobs finish within the grace period; cancel (hand back) the rest."""
        if not tasks:
            return
        _, still_running = await asyncio.wait(tasks, timeout=grace_s)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions move (a worker joined or left). With the ledger, jobs running here
        keep running: whoever gets the partition fetches their records again, finds them
        held in the ledger and waits for their answers, so a long model call is never
        restarted by a rebalance, and the group does not wait for it either. Without the
        ledger nothing would stop a second run, so running jobs finish (or, past the
        grace period, are handed back) first."""
        if revoked:
            self.revocations += 1
        if not self._keep_jobs_on_revoke:
            tasks = [t for t, tp in self._tasks.items() if tp in revoked]
            await self._drain(tasks, self._shutdown_grace_s)
        await self._commit(list(revoked))
        self._tracker.forget(revoked)

    async def lag(self) -> dict[int, int]:
        """Messages not yet fetched, per assigned partition (from the last fetch's high
        watermark; partitions not fetched yet are left out)."""
        result: dict[int, int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(KafkaError, AssertionError):
                result[tp.partition] = max(highwater - await self._consumer.position(tp), 0)
        return result

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            self.ready.set()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: JobConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner.on_assigned(assigned)
