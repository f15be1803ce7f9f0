"""The Celery side of bench/peers.py: one no-op task, Redis broker and result backend.

The queue name comes from BENCH_QUEUE so each run starts on an empty queue.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.common import REDIS_URL

QUEUE = os.environ.get("BENCH_QUEUE", "bench-celery")
# What the worker is started with (bench/peers.py prints these).
WORKER_ARGS = (
    "--pool=solo",
    "--concurrency=1",
    "--prefetch-multiplier=64",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    "--loglevel=WARNING",
)

app = Celery("bench_peer", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=False,
    worker_prefetch_multiplier=64,
    result_expires=600,
    task_ignore_result=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")  # type: ignore[misc]
def noop(text: str) -> str:
    return "ok"
