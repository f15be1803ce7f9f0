"""The job consumer: each fetched job runs through the runner beside the fetch loop.

It is a member of the shared group loop (``transport/group.py``), which fetches and
commits. Jobs run as tasks, as many at once as the lane gate gives the consumer's lane room
for, so a long model call never holds up the fetch loop. Without room the loop keeps
polling with its partitions paused. Offsets are committed only up to the oldest unfinished
job of each partition: at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from contracts.names import Lane
from transport.group import GroupLoop
from transport.records import Record
from workers.runtime.lanes import LaneGate
from workers.runtime.runner import JobRunner

log = logging.getLogger(__name__)

# A job whose run failed (no reply could be sent) runs again after this, doubling up to
# the maximum; a runner bug gets this many runs.
RERUN_FIRST_S = 0.5
RERUN_MAX_S = 10.0
RUNNER_BUG_TRIES = 3
# What the broker refuses for its size: however often the job runs, the same is refused.
_NEVER_FITS = (MessageSizeTooLargeError, RecordListTooLargeError)


class _LaneRoom:
    """The room of one lane of the gate, as the consume loop asks for it."""

    def __init__(self, gate: LaneGate, lane: Lane) -> None:
        self._gate = gate
        self._lane: Lane = lane

    def room(self) -> int:
        return self._gate.room(self._lane)

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
    ) -> None:
        self._runner = runner
        self._gate = gate
        self.lane: Lane = lane
        self._shutdown_grace_s = shutdown_grace_s
        self._keep_jobs_on_revoke = keep_jobs_on_revoke
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._loop = GroupLoop(
            consumer,
            [topic],
            self,
            room=_LaneRoom(gate, lane),
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
        await self._loop.run()

    def fetch_stalled_s(self) -> float:
        """Seconds since the fetch loop last came round (it does at least once a second)."""
        return self._loop.stalled_s()

    async def lag(self) -> dict[int, int]:
        return await self._loop.lag()

    def take(self, tp: TopicPartition, record: Record) -> None:
        self._gate.started(self.lane)
        self._loop.started(tp, record.offset)
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
        if partitions is None:
            await self._drain(list(self._tasks), self._shutdown_grace_s)
        elif not self._keep_jobs_on_revoke:
            tasks = [t for t, tp in self._tasks.items() if tp in partitions]
            await self._drain(tasks, self._shutdown_grace_s)
