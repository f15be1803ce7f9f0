"""No URL a caller gives reaches the worker's own network: every spelling of a loopback,
private or metadata address, a redirect inward, and a name that rebinds between check and
fetch, each held against real servers on loopback addresses that count what reaches them,
for `audio_url` (the audio loader) and `image_url` (a generate job through the runner)."""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from contracts import ChatMessage, ErrorCode, ErrorReply, GenerateRequest, GenerateResult
from contracts.codec import encode
from contracts.content import ContentPart, ImagePart, ImageUrl, TextPart
from contracts.envelope import ReplyAddress
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.router import ModelRouter
from tests.unit.counting_server import Answer, CountingServer
from tests.unit.job_runner_harness import REPLIES, Fixture, _record
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay
from workers.handlers.audio import AudioLoader
from workers.handlers.generate import GenerateHandler
from workers.handlers.guarded_fetch import GuardedFetch
from workers.handlers.images import ImageInliner
from workers.handlers.url_guard import UrlGuard, UrlRefused, resolve_host

MODEL = "gpt-4o-mini"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
# 127.0.0.2 stands for a public server: the operator allowed it, as a network of its own.
OUTSIDE = "127.0.0.2"
ALLOWED = [ipaddress.ip_network(f"{OUTSIDE}/32")]


class Recording(httpx.AsyncBaseTransport):
    """The real transport, noting the URL of every request it is asked to connect for."""

    def __init__(self) -> None:
        self.inner: httpx.AsyncHTTPTransport | None = None  # made when first asked (a TLS context)
        self.sent: list[httpx.URL] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.url)
        self.inner = self.inner or httpx.AsyncHTTPTransport()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self.inner is not None:
            await self.inner.aclose()


@pytest.fixture
async def loopback() -> AsyncIterator[CountingServer]:
    async with CountingServer("127.0.0.1") as server:
        server.answers["/a.png"] = Answer(200, PNG, {"content-type": "image/png"})
        yield server


@pytest.fixture
async def outside(loopback: CountingServer) -> AsyncIterator[CountingServer]:
    # The same port as the loopback server: only the address tells them apart.
    async with CountingServer(OUTSIDE, loopback.port) as server:
        server.answers["/a.png"] = Answer(200, PNG, {"content-type": "image/png"})
        server.answers["/moved"] = Answer(302, headers={"location": f"{loopback.url}/a.png"})
        yield server


def _forms(port: int) -> dict[str, str]:
    return {
        "decimal": f"http://2130706433:{port}/a.png",
        "octal": f"http://0177.0.0.1:{port}/a.png",
        "hex": f"http://0x7f.0.0.1:{port}/a.png",
        "hex-whole": f"http://0x7f000001:{port}/a.png",
        "short": f"http://127.1:{port}/a.png",
        "zero": f"http://0:{port}/a.png",  # 0.0.0.0 connects to this host
        "ipv6": f"http://[::1]:{port}/a.png",
        "ipv4-mapped": f"http://[::ffff:127.0.0.1]:{port}/a.png",
        "ipv4-mapped-hex": f"http://[::ffff:7f00:1]:{port}/a.png",
        "localhost": f"http://localhost:{port}/a.png",
        "localhost-dot": f"http://LOCALHOST.:{port}/a.png",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "private": f"http://10.0.0.1:{port}/a.png",
        "unique-local": f"http://[fd00::1]:{port}/a.png",
        "multicast": f"http://224.0.0.1:{port}/a.png",
        "redirect": f"http://{OUTSIDE}:{port}/moved",
    }


FORMS = list(_forms(0))


def _job(url: str) -> GenerateRequest:
    look: list[ContentPart] = [
        TextPart(text="What is this?"),
        ImagePart(image_url=ImageUrl(url=url, detail="low")),
    ]
    return GenerateRequest(
        request_id="look-1",
        model=MODEL,
        messages=[ChatMessage(role="user", content=look)],
        reply_to=ReplyAddress(topic=REPLIES, partition=0),
    )


def _generate(replay: Replay, images: ImageInliner) -> GenerateHandler:
    config = parse_config("openai", {"api_key": API_KEY, "models": [MODEL]}, OpenAIChatConfig)
    chat = OpenAIChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())
    return GenerateHandler(ModelRouter("chat", [chat]), images=images)


def _fetch(connect: httpx.AsyncBaseTransport, guard: UrlGuard | None = None) -> GuardedFetch:
    return GuardedFetch(guard or UrlGuard(allowed_networks=ALLOWED), transport=connect)


@pytest.mark.parametrize("form", FORMS)
async def test_no_form_of_an_inward_url_is_fetched(
    form: str, loopback: CountingServer, outside: CountingServer
) -> None:
    url = _forms(loopback.port)[form]
    audio_connect, image_connect = Recording(), Recording()
    audio = AudioLoader([], max_bytes=1000, fetch=_fetch(audio_connect))
    try:
        with pytest.raises(ProviderError) as refused:
            await audio.read(url)
    finally:
        await audio.aclose()
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert "refused" in refused.value.detail

    replay = Replay()  # the provider is never asked: any request would fail the test
    handler = _generate(replay, ImageInliner(_fetch(image_connect), max_bytes=1000))
    job = Fixture(handler=handler)
    try:
        await job.runner.run(_record(encode(_job(url))))
    finally:
        await handler.aclose()
    (final,) = job.publisher.replies(REPLIES)
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INVALID_INPUT
    assert f"image_url {url!r} refused" in final.message
    assert replay.requests == []

    assert loopback.requests == []
    connected = {u.host for u in [*audio_connect.sent, *image_connect.sent]}
    assert connected <= {OUTSIDE}  # the redirect's first hop, and nothing else
    if form == "redirect":
        assert outside.requests == [("/moved", f"{OUTSIDE}:{loopback.port}")] * 2
        assert f"redirects to '{loopback.url}/a.png'" in final.message


async def test_a_name_that_rebinds_after_its_check_reaches_only_the_address_checked(
    loopback: CountingServer, outside: CountingServer
) -> None:
    # "localhost" is 127.0.0.1 to the system: a fetch that resolved the name again, after
    # the check, would reach the loopback server.
    answers = iter([[OUTSIDE], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers) if host == "localhost" else await resolve_host(host, port)

    replay = Replay().sse("openai/chat_stream.sse")
    guard = UrlGuard(allowed_networks=ALLOWED, resolve=rebinding)
    images = ImageInliner(GuardedFetch(guard), max_bytes=1000)
    handler = _generate(replay, images)
    url = f"http://localhost:{loopback.port}/a.png"
    job = Fixture(handler=handler)
    try:
        await job.runner.run(_record(encode(_job(url))))
        assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
        with pytest.raises(ProviderError, match=r"127\.0\.0\.1, a loopback address"):
            await images.inline(_job(url).messages)  # the name resolves inward now
    finally:
        await handler.aclose()
    assert loopback.requests == []
    assert outside.requests == [("/a.png", f"localhost:{loopback.port}")]
    # The provider got the picture itself, never the URL.
    (sent,) = json.loads(replay.requests[0].content)["messages"]
    expected = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    assert sent["content"][1]["image_url"] == {"url": expected, "detail": "low"}
    assert "localhost" not in replay.requests[0].content.decode()


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (Answer(200, b"<html>", {"content-type": "text/html"}), "is text/html, not an image"),
        (Answer(200, PNG), "is of no named type, not an image"),
        (Answer(200, PNG * 100, {"content-type": "image/png"}), "1000-byte limit"),
    ],
)
async def test_an_image_that_is_none_or_too_large_is_refused_before_the_provider(
    loopback: CountingServer, outside: CountingServer, answer: Answer, why: str
) -> None:
    outside.answers["/odd"] = answer
    replay = Replay()
    handler = _generate(replay, ImageInliner(_fetch(Recording()), max_bytes=1000))
    job = Fixture(handler=handler)
    try:
        await job.runner.run(_record(encode(_job(f"http://{OUTSIDE}:{loopback.port}/odd"))))
    finally:
        await handler.aclose()
    (final,) = job.publisher.replies(REPLIES)
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INVALID_INPUT
    assert why in final.message
    assert replay.requests == []


async def test_hosts_the_operator_names_are_left_for_the_provider_to_fetch() -> None:
    seen: list[httpx.Request] = []

    def connect(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    fetch = GuardedFetch(UrlGuard(resolve=public), transport=httpx.MockTransport(connect))
    images = ImageInliner(fetch, max_bytes=1000, provider_hosts=[".example.com"])
    given = _job("https://images.example.com/a.png").messages
    try:
        assert await images.inline(given) == given
        assert seen == []
        # A URL that some parsers read as 127.0.0.1 is not left to the provider: the worker
        # fetches it from the address its own reading resolves to.
        (tricky,) = await images.inline(
            _job("http://127.0.0.1\\@images.example.com/a.png").messages
        )
    finally:
        await images.aclose()
    assert [(r.url.host, r.headers["host"]) for r in seen] == [
        ("93.184.216.34", "images.example.com")
    ]
    assert not isinstance(tricky.content, str)
    image = tricky.content[1]
    assert isinstance(image, ImagePart)
    assert image.image_url.url.startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("[::7f00:1]", "loopback"),  # IPv4-compatible
        ("[64:ff9b::a9fe:a9fe]", "link-local"),  # NAT64 of 169.254.169.254
        ("[2002:7f00:1::]", "loopback"),  # 6to4
        ("[fec0::1]", "site-local"),
        ("[fe80::1%25eth0]", "link-local"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("[ff02::1]", "multicast"),
    ],
)
async def test_addresses_hidden_in_other_forms_are_named_for_what_they_reach(
    host: str, kind: str
) -> None:
    with pytest.raises(UrlRefused, match=f"a {kind} address"):
        await UrlGuard().check(f"http://{host}/a.png")


async def test_a_public_address_or_name_is_fetched_from_the_address_checked() -> None:
    async def public(host: str, port: int) -> list[str]:
        return {"xn--bcher-kva.example": ["2606:4700::1111"]}[host]

    guard = UrlGuard(resolve=public)
    assert (await guard.check("https://8.8.8.8/a.png")).address == "8.8.8.8"
    idn = await guard.check("https://bücher.example:8443/a.png")
    assert (idn.host, idn.port, idn.address) == ("xn--bcher-kva.example", 8443, "2606:4700::1111")
    seen: list[httpx.Request] = []

    def connect(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"RIFF")

    fetch = GuardedFetch(guard, transport=httpx.MockTransport(connect))
    try:
        await fetch.get(
            "https://bücher.example:8443/a.wav?x=1", field="audio_url", op="t", max_bytes=9
        )
    finally:
        await fetch.aclose()
    (request,) = seen
    assert str(request.url) == "https://[2606:4700::1111]:8443/a.wav?x=1"
    assert request.headers["host"] == "xn--bcher-kva.example:8443"
    assert request.extensions["sni_hostname"] == "xn--bcher-kva.example"
