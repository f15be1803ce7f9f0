"""The health port: bound early, a taken one refused in one line, and told through a port
file (written whole, once the server serves) when the OS picked it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from workers.health import HealthServer
from workers.health_port import (
    HealthPortUnavailable,
    HealthSocket,
    read_port_file,
    write_port_file,
)
from workers.metrics import WorkerMetrics


def test_a_port_file_is_read_back_and_absent_until_written(tmp_path: Path) -> None:
    path = tmp_path / "run" / "worker.port"  # its folder is made too
    assert read_port_file(path) is None
    write_port_file(path, 41234)
    assert read_port_file(path) == 41234
    write_port_file(path, 41235)  # a restart's port replaces the old one
    assert read_port_file(path) == 41235
    assert [p.name for p in path.parent.iterdir()] == ["worker.port"]  # no temporary left


def test_a_taken_port_is_refused_in_one_line_that_names_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with pytest.raises(HealthPortUnavailable) as raised:
            HealthSocket(port)
    assert str(raised.value) == (
        f"health port {port} is in use (address already in use): "
        "pick another with --health-port, or 0 for any free port"
    )


async def test_the_port_file_is_written_once_the_server_serves(tmp_path: Path) -> None:
    path = tmp_path / "worker.port"
    bound = HealthSocket(0, host="127.0.0.1", port_file=path)
    assert bound.port != 0
    # Bound, not listening: a probe is refused at once (the model may still be loading).
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", bound.port)
    assert read_port_file(path) is None

    server = HealthServer(WorkerMetrics("embed"), lambda: True)
    await server.start(bound)
    try:
        assert read_port_file(path) == server.port == bound.port
        reader, writer = await asyncio.open_connection("127.0.0.1", bound.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200 OK")
        writer.close()
        await writer.wait_closed()
    finally:
        await server.aclose()
