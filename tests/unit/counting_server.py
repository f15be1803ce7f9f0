"""A small HTTP server on a loopback address that counts the requests reaching it and answers
each path as scripted: what a fetch that should never reach it is held against."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class CountingServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port  # 0: a free one, read back once started
        self.requests: list[tuple[str, str]] = []  # (path, Host header) of each request
        self.answers: dict[str, Answer] = {}
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> CountingServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        fields = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
        self.requests.append((path, fields.get("Host", fields.get("host", ""))))
        answer = self.answers.get(path, Answer(404))
        lines = [f"HTTP/1.1 {answer.status} X", f"Content-Length: {len(answer.body)}"]
        lines += [f"{name}: {value}" for name, value in answer.headers.items()]
        writer.write("\r\n".join([*lines, "Connection: close", "", ""]).encode() + answer.body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
