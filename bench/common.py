"""What every benchmark shares: local services, helper processes, tables and result files."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

from bench.spread import merge

R = TypeVar("R")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BOOTSTRAP = f"127.0.0.1:{os.environ.get('FLEET_KAFKA_PORT', '19092')}"
REDIS_URL = f"redis://127.0.0.1:{os.environ.get('FLEET_REDIS_PORT', '16379')}/0"
READY_LINE = "BENCH-READY"


def start_services() -> None:
    """Local Kafka, Redis and PostgreSQL through the project's own (idempotent) script."""
    subprocess.run(
        ["bash", str(REPO / "deploy/local/services.sh"), "start"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def namespace(prefix: str) -> str:
    """A fresh namespace per run, so topics and consumer groups never carry old state."""
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


class Helper:
    """A child process that prints READY_LINE once it can take work; stopped by SIGTERM."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_name: str,
        env: dict[str, str] | None = None,
        ready_line: str | None = READY_LINE,
        ready_timeout_s: float = 120.0,
    ) -> None:
        log_dir = REPO / ".fleet" / "logs" / "bench"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / f"{log_name}.log"
        self.process = subprocess.Popen(
            list(command),
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if ready_line is None:  # the caller finds out itself (e.g. a first job that returns)
            self._drain_to_log()
        else:
            self._wait_ready(ready_line, ready_timeout_s)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_ready(self, ready_line: str, timeout_s: float) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        seen: list[str] = []
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if readable:
                line = self.process.stdout.readline()
                if not line and self.process.poll() is not None:
                    break
                seen.append(line)
                if ready_line in line:
                    self._drain_to_log()
                    return
            elif self.process.poll() is not None:
                break
        self.stop()
        tail = "".join(seen[-40:])
        raise RuntimeError(f"helper {self.process.args!r} not ready in {timeout_s}s:\n{tail}")

    def _drain_to_log(self) -> None:
        """Copy the rest of the child's output to its log file, off the benchmark's path."""
        import threading

        def copy() -> None:
            assert self.process.stdout is not None
            with self.log.open("a") as out:
                for line in self.process.stdout:
                    out.write(line)

        threading.Thread(target=copy, daemon=True).start()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def helper(command: Sequence[str], **options: Any) -> Iterator[Helper]:
    process = Helper(command, **options)
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def helpers(
    commands: Sequence[Sequence[str]], *, log_name: str, **options: Any
) -> Iterator[list[Helper]]:
    """Several helpers started side by side, each waiting for its ready line in a thread of
    its own: N worker processes join their group in about the time one takes."""
    with ThreadPoolExecutor(max(1, len(commands))) as pool:
        futures = [
            pool.submit(Helper, command, log_name=f"{log_name}-{i}", **options)
            for i, command in enumerate(commands, 1)
        ]
        wait(futures)
        started = [future.result() for future in futures if future.exception() is None]
        try:
            for future in futures:
                future.result()  # the first that failed, once the others are up to stop
            yield started
        finally:
            list(pool.map(Helper.stop, started))


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Print (and return) a Markdown table."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
        *(
            "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"
            for row in cells
        ),
    ]
    text = "\n".join(lines)
    print(f"\n{title}\n{text}\n", flush=True)
    return text


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def print_settings(settings: dict[str, Any]) -> None:
    print("pinned settings:", flush=True)
    for key, value in settings.items():
        print(f"  {key}: {value}", flush=True)


def add_repeat_option(parser: argparse.ArgumentParser) -> None:
    """``--repeat N`` for a case whose ``main`` passes ``repeat=args.repeat`` to run_case."""
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the case N times; the table shows each number's median and min-max",
    )


def run_case(
    case: str,
    pinned: dict[str, Any],
    measure: Callable[[], R],
    report: Callable[[R], str],
    *,
    as_json: Callable[[R], Any] = lambda result: result,
    repeat: int = 1,
    **extra: Any,
) -> None:
    """What every case's ``main`` does: start the services, print the pinned settings,
    measure (``repeat`` times), print the table and save it all to bench/results/<case>.json.

    With several runs the table is the case's own report over the runs merged
    (bench/spread.py): each number its median with the min-max beside it. The file's
    ``results`` hold the medians (a Spread is written as its median), ``runs`` each run's."""
    start_services()
    print_settings(pinned)
    load_before = load_average()
    runs: list[R] = []
    for run in range(1, repeat + 1):
        runs.append(measure())
        if repeat > 1:
            print(f"run {run} of {repeat}:", flush=True)
            report(runs[-1])
    merged = merge(runs) if repeat > 1 else runs[0]
    if repeat > 1:
        print(f"{repeat} runs, median (min-max):", flush=True)
    table = report(merged)
    save_result(
        case,
        {
            "settings": {k: str(v) for k, v in pinned.items()},
            **extra,
            "repeat": repeat,
            "results": as_json(merged),
            **({"runs": [as_json(r) for r in runs]} if repeat > 1 else {}),
            "load_average_before": load_before,
            "table": table,
        },
    )


def save_result(case: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{case}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    print(f"results written to {path.relative_to(REPO)}", flush=True)
    return path


def load_result(case: str) -> dict[str, Any] | None:
    path = RESULTS / f"{case}.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def service_pids() -> dict[str, int]:
    """The local Kafka and Redis processes, from the pid files deploy/local writes."""
    run_dir = Path(os.environ.get("FLEET_RUN_DIR", REPO / ".fleet" / "run"))
    kafka_port = os.environ.get("FLEET_KAFKA_PORT", "19092")
    redis_port = os.environ.get("FLEET_REDIS_PORT", "16379")
    pids = {}
    for name, file in (("kafka", f"kafka-{kafka_port}.pid"), ("redis", f"redis-{redis_port}.pid")):
        with contextlib.suppress(OSError, ValueError):
            pids[name] = int((run_dir / file).read_text().strip())
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds that named processes spend between ``start`` and ``stop``.

    Throughput on a shared 2-core machine moves with whatever else runs; CPU time per job
    of each process does not, so every case records both. A name may stand for several
    processes (the worker processes of one group): its time is theirs together.
    """

    def __init__(self, pids: Mapping[str, int | Collection[int]]) -> None:
        self._pids = {
            name: (pid,) if isinstance(pid, int) else tuple(pid) for name, pid in pids.items()
        }
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: sum(map(cpu_seconds, pids)) for name, pids in self._pids.items()}

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        return {name: seconds - self._start[name] for name, seconds in self._now().items()}


def load_average() -> float:
    return os.getloadavg()[0]
