"""What the HTTP gateway adds over FleetClient, and what LiteLLM's proxy adds over the model it
fronts, in one run. The fleet's model is the no-op chat worker (bench/noop_worker.py): the
same job sent by FleetClient.generate and as ``POST /v1/chat/completions`` through a gateway
process. LiteLLM's proxy (its own locked environment, bench/litellm/) fronts a mock OpenAI
server (bench/mock_openai.py) that answers at once, called directly and through the proxy.
Each path: latency at 1 in flight, calls/s at 64 in flight, and the CPU time per call of
every process at 64 (on a shared 2-core machine the rate moves with everything else; CPU per
call does not). HTTP calls come from bench/http_load.py, a raw keep-alive client that costs
a few tens of microseconds a call, so that the load generator is not what is measured.

``python -m bench.gateway_overhead [--requests 500] [--burst 2000]`` (smoke: ``--requests 50
--burst 200``)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import http_load
from bench.common import (
    BOOTSTRAP,
    READY_LINE,
    REPO,
    CpuMeter,
    Helper,
    add_repeat_option,
    helper,
    helpers,
    namespace,
    percentile,
    print_table,
    python_module,
    run_case,
)
from bench.gateway_frameworks import free_port
from bench.noop_worker import NOOP_MODEL
from contracts.secrets import Secret
from gateway.overhead import HEADER as OVERHEAD_HEADER
from producer_sdk import FleetClient
from transport.connection import KafkaConnection

API_KEY = "sk-bench"
BODY = {"model": NOOP_MODEL, "messages": [{"role": "user", "content": "ping"}]}
CHAT = http_load.post("/v1/chat/completions", BODY, {"authorization": f"Bearer {API_KEY}"})
IN_FLIGHT = 64
WARMUP = 200
ROUNDS = 4  # bursts at 64 per path, taking turns
# The targets (docs/benchmarks.md): added p50 and p99 at 1 in flight, and the rate
# at 64 in flight as a share of FleetClient's.
TARGET_ADDED_P50_MS = 2.0
TARGET_ADDED_P99_MS = 8.0
TARGET_RATE_SHARE = 0.6

Call = Callable[[], Awaitable[object]]
Result = dict[str, float]


async def serve_gateway(ns: str, port: int) -> None:
    from gateway import Gateway

    gateway = Gateway(
        KafkaConnection(bootstrap_servers=BOOTSTRAP),
        namespace=ns,
        api_keys={"bench": Secret(API_KEY)},
        tenant_keys={},
        models={NOOP_MODEL: "generate"},
        port=port,
    )
    async with gateway.running():
        print(READY_LINE, flush=True)
        await asyncio.Event().wait()  # until SIGTERM ends the process


class Way:
    """One path to the model, measured beside the others: its calls at 1 in flight
    interleave with theirs, and its bursts at 64 take turns with theirs, so that every path
    sees the same machine (others share it, and its load moves within a minute)."""

    def __init__(
        self, call: Call, burst: Callable[[int], Awaitable[float]], meter: CpuMeter
    ) -> None:
        self.call = call
        self.burst = burst  # seconds for N calls at IN_FLIGHT
        self.meter = meter
        self.ms: list[float] = []
        self.own_ms: list[float] = []  # the gateway's overhead header, where there is one
        self.seconds = 0.0
        self.calls_at_64 = 0  # calls made at IN_FLIGHT, over every round
        self.cpu: dict[str, float] = {}

    async def one(self) -> None:
        started = time.perf_counter()
        await self.call()
        self.ms.append((time.perf_counter() - started) * 1000)

    async def round(self, calls: int) -> None:
        self.meter.start()
        self.seconds += await self.burst(calls)
        self.calls_at_64 += calls
        for name, seconds in self.meter.stop().items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds

    def result(self) -> Result:
        calls = self.calls_at_64
        return {
            "p50_ms": percentile(self.ms, 50),
            "p99_ms": percentile(self.ms, 99),
            "per_s_64": calls / self.seconds,
            **{f"own_p{q}_ms": percentile(self.own_ms, q) for q in (50, 99) if self.own_ms},
            **{f"cpu_us_{name}": seconds / calls * 1e6 for name, seconds in self.cpu.items()},
        }


def fleet_way(fleet: FleetClient, meter: CpuMeter) -> Way:
    async def call() -> object:
        return await fleet.generate("ping", model=NOOP_MODEL, timeout_s=60)

    async def burst(calls: int) -> float:
        remaining = calls

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await call()

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
        return time.perf_counter() - started

    return Way(call, burst, meter)


def http_way(opened: list[http_load.HttpCaller], meter: CpuMeter) -> Way:
    return Way(
        lambda: opened[0].call(CHAT), lambda calls: http_load.burst(opened, CHAT, calls), meter
    )


def gateway_way(opened: list[http_load.HttpCaller], meter: CpuMeter) -> Way:
    """An HTTP way that also keeps what the gateway says it spent on each call at 1 in flight
    (its overhead header: its own time, less the wait for the fleet), a measure the
    machine's noise moves far less than a difference of two latencies."""
    way = http_way(opened, meter)

    async def call() -> object:
        answer = await opened[0].call(CHAT)
        way.own_ms.append(float(opened[0].header(OVERHEAD_HEADER) or "nan"))
        return answer

    way.call = call
    return way


async def measure_ways(
    ways: dict[str, Way], requests: int, bursts: dict[str, int]
) -> dict[str, Result]:
    """``requests`` calls at 1 in flight on each way, then ROUNDS bursts at IN_FLIGHT of
    ``bursts[name]`` calls (``requests`` for a way not named there)."""
    for way in ways.values():  # warm up
        await way.burst(WARMUP)
    for _ in range(requests):
        for way in ways.values():
            await way.one()
    for _ in range(ROUNDS):
        for name, way in ways.items():
            await way.round(bursts.get(name, requests))
    return {name: way.result() for name, way in ways.items()}


def litellm_environment() -> Path:
    """LiteLLM's proxy installed from bench/litellm/uv.lock (once), apart from .venv."""
    found = subprocess.run(
        ["bash", str(REPO / "bench" / "litellm" / "setup.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(found.stdout.strip())


def litellm_command(environment: Path, mock_port: int, port: int, folder: Path) -> list[str]:
    """The proxy with one model, ``noop``, at the mock; a master key, as the gateway has keys;
    no access log, as the gateway has none."""
    config = folder / "litellm.json"  # YAML is a superset of JSON
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": NOOP_MODEL,
                        "litellm_params": {
                            "model": f"openai/{NOOP_MODEL}",
                            "api_base": f"http://127.0.0.1:{mock_port}/v1",
                            "api_key": "sk-mock",
                        },
                    }
                ],
                "general_settings": {"master_key": API_KEY},
            }
        )
    )
    logging = folder / "logging.json"
    logging.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "loggers": {"uvicorn.access": {"level": "WARNING"}},
            }
        )
    )
    return [
        str(environment / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
        "--port", str(port), "--log_config", str(logging),
    ]  # fmt: skip


async def answering(port: int, server: Helper, timeout_s: float = 300) -> None:
    """Once the server answers a chat call (it imports for a while before it listens)."""
    for _ in range(int(timeout_s * 5)):
        if server.process.poll() is not None:
            raise RuntimeError(f"it exited before it answered: see {server.log}")
        try:
            async with http_load.callers(port, 1) as (caller,):
                await caller.call(CHAT)
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"no answer on port {port} within {timeout_s} s: see {server.log}")


LITELLM_ENV = {"LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}


def measure(requests: int, burst: int) -> dict[str, Result]:
    ns = namespace("gw")
    gateway_port, mock_port, litellm_port = free_port(), free_port(), free_port()
    environment = litellm_environment()
    worker = python_module("bench.noop_worker", "--namespace", ns, "--concurrency", "64")
    gateway = python_module("bench.gateway_overhead", "--serve", ns, "--port", str(gateway_port))
    mock = python_module("bench.mock_openai", "--port", str(mock_port))
    with (
        tempfile.TemporaryDirectory() as folder,
        helpers([worker, gateway, mock], log_name=f"gateway-overhead-{ns}") as (w, g, m),
        helper(
            litellm_command(environment, mock_port, litellm_port, Path(folder)),
            log_name=f"gateway-overhead-litellm-{ns}",
            env=LITELLM_ENV,
            ready_line=None,  # with its access log off it says nothing: asked until it answers
        ) as proxy,
    ):
        client = os.getpid()
        meters = {
            "FleetClient": {"client": client, "back": w.pid},
            "fleet gateway": {"client": client, "front": g.pid, "back": w.pid},
            "mock OpenAI, direct": {"client": client, "back": m.pid},
            "LiteLLM proxy": {"client": client, "front": proxy.pid, "back": m.pid},
        }

        async def run() -> dict[str, Result]:
            await answering(litellm_port, proxy)
            async with (
                FleetClient(BOOTSTRAP, namespace=ns) as fleet,
                http_load.callers(gateway_port, IN_FLIGHT) as to_gateway,
                http_load.callers(mock_port, IN_FLIGHT) as to_mock,
                http_load.callers(litellm_port, IN_FLIGHT) as to_litellm,
            ):
                ways = {
                    "FleetClient": fleet_way(fleet, CpuMeter(meters["FleetClient"])),
                    "fleet gateway": gateway_way(to_gateway, CpuMeter(meters["fleet gateway"])),
                    "mock OpenAI, direct": http_way(
                        to_mock, CpuMeter(meters["mock OpenAI, direct"])
                    ),
                    "LiteLLM proxy": http_way(to_litellm, CpuMeter(meters["LiteLLM proxy"])),
                }
                # The fleet's two ways burst longer: their ratio is the target, and a burst
                # of a few hundred calls is over in a fraction of a second, less than the
                # machine's noise. LiteLLM's proxy (about 100 calls/s here) keeps
                # ``requests``.
                fleet_bursts = {"FleetClient": burst, "fleet gateway": burst}
                return await measure_ways(ways, requests, fleet_bursts)

        return asyncio.run(run())


PINNED = {
    "fleet": "bench/noop_worker.py (idempotency ledger on, concurrency 64, 4 partitions); "
    "the gateway in a process of its own (uvicorn, one process)",
    "LiteLLM": "litellm[proxy] 1.108.7 (bench/litellm/uv.lock), one uvicorn process, "
    "a master key, no database, access log off, before a mock OpenAI server "
    "(bench/mock_openai.py) that answers at once",
    "HTTP client": "bench/http_load.py: raw HTTP/1.1 over asyncio, one kept-alive "
    "connection per caller",
    "calls in flight": f"1 (latency; the paths' calls interleaved), {IN_FLIGHT} (rate; "
    f"{ROUNDS} bursts per path, the paths taking turns; the fleet's paths --burst calls a "
    "burst, LiteLLM's and the mock's --requests)",
    "warm-up calls per path": WARMUP,
}


def report(results: dict[str, Result]) -> str:
    rows: list[list[Any]] = [
        [
            name, f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['per_s_64']:,.0f}",
            *(f"{r[k]:,.0f}" if k in r else "-" for k in ("cpu_us_client", "cpu_us_front",
                                                          "cpu_us_back")),
        ]
        for name, r in results.items()
    ]  # fmt: skip
    fleet, gateway = results["FleetClient"], results["fleet gateway"]
    mock, litellm = results["mock OpenAI, direct"], results["LiteLLM proxy"]
    added = {
        "fleet gateway added (over FleetClient)": (gateway, fleet),
        "LiteLLM added (over the mock, direct)": (litellm, mock),
    }
    for name, (through, base) in added.items():
        rows.append(
            [
                name, f"{through['p50_ms'] - base['p50_ms']:.2f}",
                f"{through['p99_ms'] - base['p99_ms']:.2f}",
                f"{through['per_s_64'] / base['per_s_64']:.2f}x", "", "", "",
            ]
        )  # fmt: skip
    headers = ["path", "p50 ms", "p99 ms", f"calls/s at {IN_FLIGHT}",
               "CPU µs/call: client", "gateway or proxy", "worker or mock"]  # fmt: skip
    rows.append(
        [
            "fleet gateway's own time (its overhead header)", f"{gateway['own_p50_ms']:.2f}",
            f"{gateway['own_p99_ms']:.2f}", "", "", "", "",
        ]
    )  # fmt: skip
    table = print_table("no-op chat, non-streamed", headers, rows)
    added_p50 = gateway["p50_ms"] - fleet["p50_ms"]
    added_p99 = gateway["p99_ms"] - fleet["p99_ms"]
    share = gateway["per_s_64"] / fleet["per_s_64"]
    litellm_p50 = litellm["p50_ms"] - mock["p50_ms"]
    litellm_p99 = litellm["p99_ms"] - mock["p99_ms"]
    targets = [
        ["gateway added p50", f"<= {TARGET_ADDED_P50_MS:g} ms", f"{added_p50:.2f} ms",
         _verdict(added_p50 <= TARGET_ADDED_P50_MS)],
        ["gateway added p99", f"<= {TARGET_ADDED_P99_MS:g} ms", f"{added_p99:.2f} ms",
         _verdict(added_p99 <= TARGET_ADDED_P99_MS)],
        [f"gateway rate at {IN_FLIGHT}", f">= {TARGET_RATE_SHARE:g}x FleetClient's",
         f"{share:.2f}x", _verdict(share >= TARGET_RATE_SHARE)],
        ["gateway added p50, against LiteLLM's", f"<= {litellm_p50:.2f} ms", f"{added_p50:.2f} ms",
         _verdict(added_p50 <= litellm_p50)],
        ["gateway added p99, against LiteLLM's", f"<= {litellm_p99:.2f} ms", f"{added_p99:.2f} ms",
         _verdict(added_p99 <= litellm_p99)],
    ]  # fmt: skip
    verdicts = print_table("targets", ["what", "target", "measured", "verdict"], targets)
    return f"{table}\n\n{verdicts}"


def _verdict(met: bool) -> str:
    return "pass" if met else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="calls at 1 in flight")
    parser.add_argument(
        "--burst",
        type=int,
        default=2000,
        help=f"calls in each of the {ROUNDS} bursts at {IN_FLIGHT} in flight, per fleet path",
    )
    parser.add_argument("--serve", metavar="NAMESPACE", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    add_repeat_option(parser)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_gateway(args.serve, args.port))
        return
    run_case(
        "gateway_overhead",
        PINNED,
        lambda: measure(args.requests, args.burst),
        report,
        repeat=args.repeat,
    )


if __name__ == "__main__":
    main()
