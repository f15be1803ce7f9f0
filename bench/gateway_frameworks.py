"""Which ASGI framework and server the gateway runs on: the same small JSON endpoint
(bench/gateway_framework_apps.py) in Starlette and Litestar, each on uvicorn and granian,
measured from httpx: latency at 1 in flight, requests/s at 64 in flight.

Litestar and granian are not dependencies of the fleet (only of this comparison: the
``bench`` extra). ``python -m bench.gateway_frameworks [--requests 2000]``
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from typing import Any

import httpx

from bench.common import helper, percentile, print_table, python_module

BODY = b'{"model": "noop", "messages": [{"role": "user", "content": "ping"}]}'
SERVERS = {
    "uvicorn": lambda app, port: python_module(
        "uvicorn", "--factory", app, "--port", str(port), "--log-level", "warning",
        "--no-access-log",
    ),
    "granian": lambda app, port: python_module(
        "granian", "--interface", "asgi", "--factory", "--port", str(port),
        "--log-level", "warning", "--workers", "1", app,
    ),
}  # fmt: skip
APPS = {
    "starlette": "bench.gateway_framework_apps:starlette_app",
    "litestar": "bench.gateway_framework_apps:litestar_app",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def until_serving(client: httpx.AsyncClient) -> None:
    """The server answers (it was just started: connections are refused until it binds)."""
    for _ in range(600):
        try:
            await client.post("/v1/echo", content=BODY)
            return
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the server did not start")


async def measure(port: int, requests: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        await until_serving(client)
        for _ in range(200):  # warm up
            await client.post("/v1/echo", content=BODY)
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            (await client.post("/v1/echo", content=BODY)).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
        remaining = requests * 2

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                (await client.post("/v1/echo", content=BODY)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(64)))
        rate = requests * 2 / (time.perf_counter() - started)
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "rps_64": rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    rows: list[list[Any]] = []
    for server, command in SERVERS.items():
        for name, app in APPS.items():
            port = free_port()
            with helper(
                command(app, port), log_name=f"frameworks-{name}-{server}", ready_line=None
            ):
                result = asyncio.run(measure(port, args.requests))
            rows.append([name, server, *(f"{result[k]:.2f}" for k in ("p50_ms", "p99_ms")),
                         f"{result['rps_64']:.0f}"])  # fmt: skip
    print_table("ASGI frameworks, one JSON endpoint", ["app", "server", "p50 ms", "p99 ms",
                "req/s at 64"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
