"""Counts the Kafka requests each Python process sends, by type, and writes them to
``$FLEET_REQUEST_COUNTS/<pid>.txt`` when the process exits (bench/NOTES.md, 2026-12-07).

    FLEET_REQUEST_COUNTS=/tmp/counts PYTHONPATH=bench/request_counter:. \\
        .venv/bin/python -m bench.quick

Python imports ``sitecustomize`` at start-up from the path, so the bench and every helper
process it starts (worker, responder) count theirs. A look, not part of any case.
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
from pathlib import Path

import aiokafka.conn

_counts: collections.Counter[str] = collections.Counter()
_send = aiokafka.conn.AIOKafkaConnection.send


def _counted(
    self: aiokafka.conn.AIOKafkaConnection, request: object, *args: object, **kwargs: object
) -> object:
    _counts[type(request).__name__] += 1
    return _send(self, request, *args, **kwargs)


def _write() -> None:
    out = Path(os.environ.get("FLEET_REQUEST_COUNTS", "/tmp"))
    out.mkdir(parents=True, exist_ok=True)
    lines = [" ".join(sys.argv), *(f"{name} {n}" for name, n in _counts.most_common())]
    (out / f"{os.getpid()}.txt").write_text("\n".join(lines) + "\n")


aiokafka.conn.AIOKafkaConnection.send = _counted  # type: ignore[method-assign]
atexit.register(_write)
