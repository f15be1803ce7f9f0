"""What the HTTP gateway adds over FleetClient: the same no-op chat job (bench/noop_worker.py)
sent by FleetClient.generate and as ``POST /v1/chat/completions`` (httpx) through a gateway
process; latency at 1 in flight and jobs/s at 64 in flight, each way, with the CPU time
per job of the client, the gateway and the worker at 64 (on a shared 2-core machine the
rate moves with everything else; CPU per job does not).

``python -m bench.gateway_overhead [--requests 500]`` (smoke: ``--requests 50``)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.common import (
    BOOTSTRAP,
    READY_LINE,
    CpuMeter,
    helpers,
    namespace,
    percentile,
    print_table,
    python_module,
    start_services,
)
from bench.gateway_frameworks import free_port
from bench.noop_worker import NOOP_MODEL
from contracts.secrets import Secret
from producer_sdk import FleetClient
from transport.connection import KafkaConnection

API_KEY = "sk-bench"
BODY = {"model": NOOP_MODEL, "messages": [{"role": "user", "content": "ping"}]}
Call = Callable[[], Awaitable[object]]


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


async def latencies(call: Call, requests: int) -> list[float]:
    found = []
    for _ in range(requests):
        started = time.perf_counter()
        await call()
        found.append((time.perf_counter() - started) * 1000)
    return found


async def rate(call: Call, requests: int, in_flight: int = 64) -> float:
    remaining = requests

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return requests / (time.perf_counter() - started)


async def measure(
    ns: str, port: int, requests: int, meter: CpuMeter
) -> dict[str, dict[str, float]]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with (
        FleetClient(BOOTSTRAP, namespace=ns) as fleet,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits, timeout=60
        ) as http,
    ):

        async def direct() -> object:
            return await fleet.generate("ping", model=NOOP_MODEL, timeout_s=60)

        async def through_gateway() -> object:
            return (await http.post("/v1/chat/completions", json=BODY)).raise_for_status()

        results = {}
        for name, call in (("FleetClient", direct), ("gateway", through_gateway)):
            await rate(call, 200, 16)  # warm up
            ms = await latencies(call, requests)
            meter.start()
            jobs_per_s = await rate(call, requests * 4)
            cpu = {k: v / (requests * 4) * 1e6 for k, v in meter.stop().items()}
            results[name] = {
                "p50_ms": percentile(ms, 50),
                "p99_ms": percentile(ms, 99),
                "jobs_per_s_64": jobs_per_s,
                **{f"cpu_us_{k}": v for k, v in cpu.items()},
            }
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--serve", metavar="NAMESPACE", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_gateway(args.serve, args.port))
        return
    start_services()
    ns, port = namespace("gw"), free_port()
    worker = python_module("bench.noop_worker", "--namespace", ns, "--concurrency", "64")
    gateway = python_module("bench.gateway_overhead", "--serve", ns, "--port", str(port))
    with helpers([worker, gateway], log_name=f"gateway-overhead-{ns}") as (w, g):
        meter = CpuMeter({"client": os.getpid(), "gateway": g.pid, "worker": w.pid})
        results = asyncio.run(measure(ns, port, args.requests, meter))
    rows: list[list[Any]] = [
        [
            name,
            *(f"{r[k]:.2f}" for k in ("p50_ms", "p99_ms")),
            *(f"{r[k]:.0f}" for k in ("jobs_per_s_64", "cpu_us_client", "cpu_us_gateway")),
            f"{r['cpu_us_worker']:.0f}",
        ]
        for name, r in results.items()
    ]
    direct, gw = results["FleetClient"], results["gateway"]
    rows.append(
        [
            "gateway added",
            f"{gw['p50_ms'] - direct['p50_ms']:.2f}",
            f"{gw['p99_ms'] - direct['p99_ms']:.2f}",
            f"{gw['jobs_per_s_64'] / direct['jobs_per_s_64']:.2f}x",
            "",
            "",
            "",
        ]
    )
    headers = ["path", "p50 ms", "p99 ms", "jobs/s at 64", "CPU µs/job: client", "gateway",
               "worker"]  # fmt: skip
    print_table("no-op chat job", headers, rows)


if __name__ == "__main__":
    main()
