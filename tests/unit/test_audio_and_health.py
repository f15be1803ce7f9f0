"""Audio sources of the transcribe worker, and the worker's health endpoint."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import ErrorCode
from providers.errors import ProviderError
from workers.handlers.audio import AudioLoader
from workers.handlers.guarded_fetch import GuardedFetch
from workers.handlers.providers import health_of
from workers.handlers.url_guard import UrlGuard
from workers.health import HealthServer
from workers.metrics import Outcome, WorkerMetrics

# What the fake DNS answers; anything else does not resolve.
DNS = {
    "audio.local": ["93.184.216.34"],
    "cdn.example.com": ["93.184.216.35"],
    "sneaky.example.net": ["93.184.216.36", "10.1.2.3"],
    "localhost": ["127.0.0.1", "::1"],
}


async def _resolve(host: str, port: int) -> list[str]:
    if host in DNS:
        return DNS[host]
    try:  # a literal address resolves to itself, as getaddrinfo does
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        raise socket.gaierror(f"{host}: Name or service not known") from None


async def _loader(
    roots: list[str], handler: httpx.MockTransport | None = None, **guard: Any
) -> AudioLoader:
    # The mock stands where the connection is made: it sees the address connected to.
    fetch = GuardedFetch(UrlGuard(resolve=_resolve, **guard), transport=handler)
    return AudioLoader(roots, max_bytes=1000, fetch=fetch)


async def test_files_only_under_the_allowed_roots(tmp_path: Path) -> None:
    (tmp_path / "ok.wav").write_bytes(b"RIFF-audio")
    loader = await _loader([str(tmp_path)])
    try:
        assert await loader.read(str(tmp_path / "ok.wav")) == b"RIFF-audio"
        assert await loader.read(f"file://{tmp_path / 'ok.wav'}") == b"RIFF-audio"
        with pytest.raises(ProviderError, match="outside the allowed audio roots") as info:
            await loader.read(str(tmp_path / ".." / "elsewhere.wav"))
        assert info.value.code is ErrorCode.INVALID_INPUT
        with pytest.raises(ProviderError) as missing:
            await loader.read(str(tmp_path / "missing.wav"))
        assert missing.value.code is ErrorCode.NOT_FOUND
        (tmp_path / "big.wav").write_bytes(b"x" * 2000)
        with pytest.raises(ProviderError, match="1000-byte limit"):
            await loader.read(str(tmp_path / "big.wav"))
        with pytest.raises(ProviderError, match="unsupported audio_url scheme 'ftp'"):
            await loader.read("ftp://host/a.wav")
    finally:
        await loader.aclose()


async def test_http_audio_with_errors_mapped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ok.wav":
            return httpx.Response(200, content=b"RIFF-remote")
        if request.url.path == "/big.wav":
            return httpx.Response(200, content=b"x" * 5000)
        if request.url.path == "/slow.wav":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(404)

    loader = await _loader([], httpx.MockTransport(handler))
    try:
        assert await loader.read("http://audio.local/ok.wav") == b"RIFF-remote"
        cases = {"/missing.wav": ErrorCode.NOT_FOUND, "/big.wav": ErrorCode.INVALID_INPUT,
                 "/slow.wav": ErrorCode.TIMEOUT}  # fmt: skip
        for path, code in cases.items():
            with pytest.raises(ProviderError) as info:
                await loader.read(f"http://audio.local{path}")
            assert info.value.code is code
    finally:
        await loader.aclose()


async def test_urls_inside_the_workers_network_are_refused_before_any_request() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, content=b"RIFF")

    loader = await _loader([], httpx.MockTransport(handler))
    try:
        for url in (
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8080/a.wav",
            "http://localhost/a.wav",
            "http://[::1]/a.wav",
            "http://[::ffff:10.0.0.1]/a.wav",
            "https://10.0.0.5/a.wav",
            "http://sneaky.example.net/a.wav",  # one of its addresses is private
        ):
            with pytest.raises(ProviderError) as info:
                await loader.read(url)
            assert info.value.code is ErrorCode.INVALID_INPUT
            assert "private, loopback or link-local" in info.value.detail
        with pytest.raises(ProviderError, match="cannot resolve"):
            await loader.read("http://no-such-host.invalid/a.wav")
    finally:
        await loader.aclose()
    assert sent == []


async def test_a_redirect_inward_is_refused_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["host"] == "audio.local":
            return httpx.Response(302, headers={"location": "http://169.254.169.254/creds"})
        raise AssertionError(f"fetched {request.url}")

    loader = await _loader([], httpx.MockTransport(handler))
    try:
        with pytest.raises(ProviderError) as info:
            await loader.read("http://audio.local/a.wav")
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert "169.254.169.254" in info.value.detail
    finally:
        await loader.aclose()


async def test_redirects_to_allowed_hosts_are_followed() -> None:
    seen: list[tuple[str, str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(
            (str(request.url), request.headers["host"], request.extensions.get("sni_hostname"))
        )
        if request.headers["host"] == "audio.local":
            return httpx.Response(301, headers={"location": "https://cdn.example.com/a.wav"})
        return httpx.Response(200, content=b"RIFF-moved")

    loader = await _loader([], httpx.MockTransport(handler), hosts=["audio.local", ".example.com"])
    try:
        assert await loader.read("http://audio.local/a.wav") == b"RIFF-moved"
        # Each hop connects to the address its check resolved; the name stays in Host and SNI.
        assert seen == [
            ("http://93.184.216.34/a.wav", "audio.local", None),
            ("https://93.184.216.35/a.wav", "cdn.example.com", "cdn.example.com"),
        ]
        with pytest.raises(ProviderError, match=r"not in caller_urls\.hosts"):
            await loader.read("http://elsewhere.org/a.wav")
    finally:
        await loader.aclose()


async def test_private_addresses_can_be_allowed_explicitly() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"RIFF-internal")

    loader = await _loader(
        [], httpx.MockTransport(handler), allowed_networks=[ipaddress.ip_network("10.0.0.0/24")]
    )
    try:
        assert await loader.read("http://10.0.0.5/a.wav") == b"RIFF-internal"
        with pytest.raises(ProviderError, match="private, loopback or link-local"):
            await loader.read("http://10.0.1.5/a.wav")  # outside the network allowed
    finally:
        await loader.aclose()


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


async def test_health_readiness_and_metrics() -> None:
    metrics = WorkerMetrics("embed")
    metrics.outcome(Outcome.OK)
    ready = False
    server = HealthServer(metrics, lambda: ready)
    await server.start(0, host="127.0.0.1")
    try:
        assert await _get(server.port, "/healthz") == (200, "ok\n")
        assert (await _get(server.port, "/readyz"))[0] == 503
        ready = True
        assert (await _get(server.port, "/readyz"))[0] == 200
        status, body = await _get(server.port, "/metrics")
        assert status == 200
        assert 'fleet_jobs_total{kind="embed",outcome="ok"} 1.0' in body
        assert (await _get(server.port, "/nope"))[0] == 404
    finally:
        await server.aclose()


async def test_readiness_names_the_providers_that_are_down_and_fails_when_all_are() -> None:
    health = {"openai": False, "local-llama": True}
    calls = 0

    async def provider_health() -> dict[str, bool]:
        nonlocal calls
        calls += 1
        return dict(health)

    server = HealthServer(WorkerMetrics("generate"), lambda: True, None, provider_health)
    await server.start(0, host="127.0.0.1")
    try:
        assert await _get(server.port, "/readyz") == (200, "ready\nprovider openai: down\n")
        health["local-llama"] = False
        assert (await _get(server.port, "/readyz"))[0] == 200  # within the cache's 10 s
        assert calls == 1
        server._health = None  # the cached answer expired
        status, body = await _get(server.port, "/readyz")
        assert status == 503
        assert body == "not ready\nprovider local-llama: down\nprovider openai: down\n"
    finally:
        await server.aclose()


async def test_a_provider_whose_health_check_raises_counts_as_down() -> None:
    class Broken:
        name = "broken"

        async def health(self) -> bool:
            raise ConnectionError("no route")

    class Fine:
        name = "fine"

        async def health(self) -> bool:
            return True

    assert await health_of([Broken(), Fine()]) == {"broken": False, "fine": True}


async def test_liveness_fails_with_the_reason_while_the_worker_knows_it_is_wedged() -> None:
    why: str | None = None
    server = HealthServer(WorkerMetrics("generate"), lambda: True, wedged=lambda: why)
    await server.start(0, host="127.0.0.1")
    try:
        assert await _get(server.port, "/healthz") == (200, "ok\n")
        why = "the Kafka producer's sender has stopped"
        assert await _get(server.port, "/healthz") == (
            503,
            "wedged: the Kafka producer's sender has stopped\n",
        )
    finally:
        await server.aclose()
