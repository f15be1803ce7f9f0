"""Tests of the HTTP providers and the resilience layer, and the helpers that replay
recorded responses (tests/fixtures/http/) through httpx.MockTransport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "http"
API_KEY = "sk-test-F1EETKEYDONOTLEAK0123456789"  # the recorded 401 body echoes it back

Handler = Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class ChunkedStream(httpx.AsyncByteStream):
    """A response body delivered in small pieces (split mid-line, as networks do), each
    after a pause in which other tasks run (a reader can be cancelled mid-stream), which
    records whether the client closed it."""

    def __init__(self, data: bytes, chunk_size: int, replay: Replay) -> None:
        self._data = data
        self._chunk_size = chunk_size
        self._replay = replay
        replay.opened += 1

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._data), self._chunk_size):
            await asyncio.sleep(0)
            yield self._data[start : start + self._chunk_size]

    async def aclose(self) -> None:
        self._replay.closed += 1


class Replay:
    """A MockTransport handler answering each request with the next scripted step and
    recording the requests it saw."""

    def __init__(self) -> None:
        self.steps: list[Handler] = []
        self.requests: list[httpx.Request] = []
        self.opened = 0
        self.closed = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.steps:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        return step(request)

    def open_responses(self) -> int:
        """Streamed responses opened and not yet closed."""
        return self.opened - self.closed

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def then(self, step: Handler) -> Replay:
        self.steps.append(step)
        return self

    def sse(self, name: str, *, chunk_size: int = 37) -> Replay:
        def step(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream; charset=utf-8"},
                stream=ChunkedStream(fixture(name), chunk_size, self),
            )

        return self.then(step)

    def json(self, status: int, name: str, headers: dict[str, str] | None = None) -> Replay:
        return self.raw(status, fixture(name), headers, content_type="application/json")

    def raw(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
    ) -> Replay:
        def step(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                status, headers={"content-type": content_type, **(headers or {})}, content=body
            )

        return self.then(step)

    def timeout(self) -> Replay:
        def step(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("timed out reading the response", request=request)

        return self.then(step)

    def connect_error(self) -> Replay:
        def step(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

        return self.then(step)


class FakeSleep:
    """Stands in for asyncio.sleep: records the waits, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
