"""A worker process's health port: bound before anything slow (a model load), so that a taken
port ends the start at once and says so in one line, and told through a file to whoever
started the process, which cannot know the port when the OS chose it (port 0)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from contracts.errors import FleetError


class HealthPortUnavailable(FleetError):
    """The health port cannot be bound; the message names it and says what to do instead."""

    def __init__(self, port: int, cause: OSError) -> None:
        state = "is in use" if cause.errno == errno.EADDRINUSE else "cannot be bound"
        why = (cause.strerror or type(cause).__name__).lower()
        super().__init__(
            f"health port {port} {state} ({why}): "
            "pick another with --health-port, or 0 for any free port"
        )
        self.port = port


class HealthSocket:
    """A TCP socket bound to the health port, not yet listening: until the health server
    starts on it, connections are refused (a probe fails at once instead of hanging), and
    no other process can take the port."""

    def __init__(self, port: int, host: str = "0.0.0.0", port_file: Path | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # As asyncio's servers do: a restart on a fixed port is not refused because of
            # the previous process's connections in TIME_WAIT (the server closes first).
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise HealthPortUnavailable(port, exc) from exc
        self.port = int(self.sock.getsockname()[1])
        self.port_file = port_file

    def announce(self) -> None:
        """Tell the bound port through the port file (called once the server serves, so that
        a reader of the file finds an endpoint that answers)."""
        if self.port_file is not None:
            write_port_file(self.port_file, self.port)

    def close(self) -> None:
        self.sock.close()


def write_port_file(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` atomically (a temporary file renamed over it): a reader
    finds no file or the whole number, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)


def read_port_file(path: Path) -> int | None:
    """The port written to ``path``, or None while the file is not there yet."""
    try:
        return int(path.read_text())
    except FileNotFoundError:
        return None
