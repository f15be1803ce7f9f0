"""The ``fleet`` command: run a worker, chat with the fleet, run the local demo, print schemas."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from subprocess import Popen

from contracts.errors import FleetError
from contracts.names import JOB_KINDS
from contracts.schema import json_schema_text
from producer_sdk import FleetClient, GenerateResult, StreamRestarted, TextDelta
from workers.settings import DEFAULT_BOOTSTRAP, WorkerSettings, load_settings
from workers.topics import ensure_topics, kind_topics

DEFAULT_MODEL = "smollm2-135m-instruct"
LOG_DIR = Path(os.environ.get("FLEET_HOME", ".fleet")) / "logs"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("FLEET_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    worker = sub.add_parser("worker", help="run one category's worker (a consumer-group member)")
    worker.add_argument("kind", choices=JOB_KINDS)
    worker.add_argument("--config", type=Path, help="TOML settings file")
    worker.add_argument("--concurrency", type=int, help="jobs in flight at once")
    worker.add_argument("--health-port", type=int, help="serve /healthz, /readyz, /metrics")
    worker.set_defaults(func=_cmd_worker)

    dev = sub.add_parser("dev", help="run the whole local fleet: one worker per kind")
    dev.add_argument("--kinds", nargs="+", choices=JOB_KINDS, default=list(JOB_KINDS))
    dev.add_argument("--config", type=Path, help="TOML settings file for every worker")
    dev.add_argument("--health-base-port", type=int, default=9400)
    dev.set_defaults(func=_cmd_dev)

    for name, helptext in (
        ("chat", "send one generate request and stream the answer"),
        ("demo", "start a generate worker, then stream one answer through it"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument(
            "prompt", nargs="?", default="Explain in two sentences what Apache Kafka is."
        )
        cmd.add_argument("--model", default=DEFAULT_MODEL)
        cmd.add_argument("--max-tokens", type=int, default=200)
        cmd.add_argument("--temperature", type=float, default=0.2)
        cmd.add_argument("--session", help="session id: the worker keeps the conversation in Redis")
        cmd.add_argument(
            "--bootstrap-servers",
            default=os.environ.get("FLEET_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
        )
        cmd.add_argument("--timeout", type=float, default=120.0)
    sub.choices["chat"].set_defaults(func=_cmd_chat)
    sub.choices["demo"].set_defaults(func=_cmd_demo)

    schema = sub.add_parser("schema", help="print the JSON Schema of the wire contract")
    schema.set_defaults(func=lambda _args: print(json_schema_text(), end="") or 0)
    return parser


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings(
        args.config, concurrency=args.concurrency, health_port=args.health_port
    )
    asyncio.run(_run_worker(args.kind, settings))
    return 0


async def _run_worker(kind: str, settings: WorkerSettings) -> None:
    from workers.app import Worker, build_handler  # imports the model libraries
    from workers.metrics import WorkerMetrics

    metrics = WorkerMetrics(kind)
    worker = Worker(kind, settings, await build_handler(kind, settings, metrics), metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


def _spawn_worker(kind: str, config: Path | None, health_port: int, log_path: Path) -> Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "workers.cli",
        "worker",
        kind,
        "--health-port",
        str(health_port),
    ]
    if config is not None:
        command += ["--config", str(config)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def _stop_all(processes: list[Popen[bytes]], timeout_s: float = 40.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        if process.poll() is None:
            process.kill()


def _cmd_dev(args: argparse.Namespace) -> int:
    processes = []
    for i, kind in enumerate(args.kinds):
        port = args.health_base_port + i
        log_path = LOG_DIR / f"worker-{kind}.log"
        processes.append(_spawn_worker(kind, args.config, port, log_path))
        print(f"[fleet] {kind} worker: http://127.0.0.1:{port}/metrics, log {log_path}")
    print("[fleet] running; Ctrl-C stops the fleet", flush=True)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        failed = [k for k, p in zip(args.kinds, processes, strict=True) if p.poll() is not None]
        print(f"fleet: the {', '.join(failed)} worker exited; see {LOG_DIR}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_all(processes)


def _cmd_chat(args: argparse.Namespace) -> int:
    return asyncio.run(_chat(args))


async def _chat(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    first: float | None = None
    async with FleetClient(args.bootstrap_servers) as fleet:
        async for event in fleet.stream_generate(
            args.prompt,
            model=args.model,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            session_id=args.session,
            timeout_s=args.timeout,
        ):
            if isinstance(event, TextDelta):
                first = first if first is not None else time.perf_counter() - started
                print(event.text, end="", flush=True)
            elif isinstance(event, StreamRestarted):
                print("\n[the worker restarted this answer]\n", flush=True)
            elif isinstance(event, GenerateResult):
                total = time.perf_counter() - started
                print(
                    f"\n\n[{event.model}: {event.usage.output_tokens} tokens, "
                    f"finish={event.finish_reason}, first chunk {first or total:.2f}s, "
                    f"total {total:.2f}s]",
                    file=sys.stderr,
                )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    asyncio.run(ensure_topics(args.bootstrap_servers, kind_topics("generate", "fleet", 4)))
    env = {**os.environ, "FLEET_BOOTSTRAP_SERVERS": args.bootstrap_servers}
    print("[fleet] starting a generate worker (logs: .fleet/logs/demo-worker.log)", file=sys.stderr)
    log_dir = Path(".fleet/logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "demo-worker.log").open("ab") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "generate"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            print(f"> {args.prompt}\n", flush=True)
            return _cmd_chat(args)
        finally:
            worker.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=30)
            if worker.poll() is None:
                worker.kill()


if __name__ == "__main__":
    raise SystemExit(main())
