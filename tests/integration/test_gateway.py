"""The HTTP gateway driven by a client no one here wrote, the official `openai` package,
against real workers: a generate worker with a scripted chat provider and an
OpenAI-compatible one replaying recorded answers, the local MiniLM embed worker, the local
Whisper transcribe worker and a batch coordinator, through the real broker, with the
workers verifying tenant signatures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import openai
import pydantic
import pytest
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionToolMessageParam,
    ChatCompletionUserMessageParam,
)
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from contracts.gateway_limits import GatewayLimits
from contracts.names import file_topic, request_topic
from contracts.secrets import Secret
from gateway import Gateway
from gateway.key_rates import KeyRates
from providers.chat import ChatProvider
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.rate_limits import RateLimit, RedisRateLimiter
from providers.redis_client import connect_redis
from providers.registry import parse_config
from providers.router import ModelRouter
from tests.conftest import REPO, Infra
from tests.integration.conftest import new_namespace, worker_settings
from tests.integration.harness import serving, topic_names, until
from tests.integration.scripted_chat import ScriptedChat
from tests.integration.test_batches import coordinator
from tests.unit.providers import API_KEY as UPSTREAM_KEY
from tests.unit.providers import Replay
from transport.connection import KafkaConnection
from transport.topic_reader import read_to_end
from workers import Worker, build_worker
from workers.handlers.generate import GenerateHandler

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]

CHAT_MODEL = "scripted-model"
# Served by the OpenAI-compatible provider, replaying recorded streams: a model that takes
# every field of the chat contract (tools, images, JSON schemas, seed, penalties, user).
UPSTREAM_MODEL = "gpt-4o-mini"
EMBED_MODEL = "all-minilm-l6-v2"
WHISPER_MODEL = "whisper-tiny.en"
API_KEY = "sk-acme-" + uuid.uuid4().hex
OTHER_KEY = "sk-globex-" + uuid.uuid4().hex  # another tenant's


# Small enough for the tests to pass them (the defaults are far larger).
# The body limit is above a short spoken clip's upload.
LIMITS = GatewayLimits(
    tenant_max_requests_in_flight=4,
    max_body_bytes=256 * 1024,
    body_timeout_s=2,
    header_timeout_s=1,
)


class Fleet:
    def __init__(
        self,
        chat: ScriptedChat,
        upstream: Replay,
        gateway: Gateway,
        connection: KafkaConnection,
        namespace: str,
        signing: dict[str, Secret],
    ) -> None:
        self.chat = chat
        self.upstream = upstream  # the OpenAI-compatible server's side: what it was sent
        self.gateway = gateway
        self.connection = connection
        self.namespace = namespace
        self.signing = signing  # each tenant's key, as the workers verify it

    @property
    def base_url(self) -> str:
        return f"http://{self.gateway.host}:{self.gateway.port}/v1"

    async def chat_jobs(self, kind: str = "generate") -> int:
        """How many records the request topic of ``kind`` holds."""
        topic = request_topic(kind, self.namespace)
        return len([record async for record in read_to_end(self.connection, topic)])

    async def until_chat_jobs(self, count: int) -> None:
        """Return once the generate request topic holds ``count`` records."""
        while await self.chat_jobs() < count:
            pass

    def client(self, api_key: str = API_KEY, **options: float) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key,
            max_retries=0,
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
async def fleet(infra: Infra) -> AsyncIterator[Fleet]:
    """One fleet for the module: workers join their groups once."""
    signing = {t: Secret(f"{t}-signing-{uuid.uuid4().hex}") for t in ("acme", "globex")}
    settings = msgspec.structs.replace(
        worker_settings(infra, new_namespace()),
        partitions=1,
        concurrency=4,
        shutdown_grace_s=5,
        tenant_keys=signing,  # the workers run only jobs signed as their tenant
    )
    chat = ScriptedChat()
    upstream = Replay()
    config = parse_config(
        "openai", {"api_key": UPSTREAM_KEY, "models": [UPSTREAM_MODEL]}, OpenAIChatConfig
    )
    providers: list[ChatProvider] = [chat, OpenAIChat(config, transport=upstream.transport())]
    router = ModelRouter("chat", providers)
    generate = Worker("generate", settings, GenerateHandler(router))
    gateway = Gateway(
        infra.connection,
        namespace=settings.namespace,
        api_keys={"acme": Secret(API_KEY), "globex": Secret(OTHER_KEY)},
        tenant_keys=signing,
        models={
            CHAT_MODEL: "generate",
            UPSTREAM_MODEL: "generate",
            EMBED_MODEL: "embed",
            WHISPER_MODEL: "transcribe",
        },
        limits=LIMITS,
        port=0,
    )
    async with (
        serving(generate),
        serving(await build_worker("embed", settings)),
        serving(await build_worker("transcribe", settings)),
        coordinator(settings),
        gateway.running(),
    ):
        yield Fleet(chat, upstream, gateway, infra.connection, settings.namespace, signing)


async def test_a_chat_completion_comes_whole_with_its_request_id(fleet: Fleet) -> None:
    key = "gw-" + uuid.uuid4().hex
    async with fleet.client() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            max_completion_tokens=16,
            temperature=0,
            extra_headers={"Idempotency-Key": key},
        )
        calls = fleet.chat.calls
        again = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            max_completion_tokens=16,
            temperature=0,
            extra_headers={"Idempotency-Key": key},
        )
    answer = raw.parse()
    assert raw.headers["x-request-id"] == key
    assert answer.object == "chat.completion"
    assert answer.model == CHAT_MODEL
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "Hello, world"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (1, 3)
    # The same key again is answered from the stored answer: the model ran once.
    assert again.choices[0].message.content == "Hello, world"
    assert fleet.chat.calls == calls


async def test_a_streamed_completion_ends_with_its_usage(fleet: Fleet) -> None:
    async with fleet.client() as client:
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, world"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    *pieces, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 3
    assert all(c.usage is None for c in pieces)


async def test_a_bad_key_is_401(fleet: Fleet) -> None:
    async with fleet.client(api_key=API_KEY + "x") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.models.list()
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


async def test_a_field_the_fleet_does_not_honour_is_400_naming_it(fleet: Fleet) -> None:
    calls = fleet.chat.calls
    async with fleet.client() as client:
        with pytest.raises(openai.BadRequestError) as unknown:
            await client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": "Hi"}],
                logit_bias={"50256": -100},
            )
        with pytest.raises(openai.BadRequestError) as wrong:
            await client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "robot", "content": "Hi"}],  # type: ignore[misc, list-item]
            )
        # Taken by the contract, refused by this provider (it cannot seed): the worker's
        # invalid_input comes back as a 400 before any of a stream is sent.
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], seed=7, stream=True
            )
    assert unknown.value.param == "logit_bias"
    assert unknown.value.type == "invalid_request_error"
    assert wrong.value.param == "messages[0].role"
    assert refused.value.code == "invalid_input"
    assert "seed" in refused.value.message
    assert fleet.chat.calls == calls


async def test_a_model_no_worker_serves_is_404(fleet: Fleet) -> None:
    async with fleet.client() as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="gpt-nowhere", messages=[{"role": "user", "content": "Hi"}]
            )
        listed = [m.id async for m in client.models.list()]
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert listed == [EMBED_MODEL, UPSTREAM_MODEL, CHAT_MODEL, WHISPER_MODEL]


async def test_embeddings_as_floats_and_as_base64(fleet: Fleet) -> None:
    texts = ["a red fox", "a quick brown dog"]
    async with fleet.client() as client:
        floats = await client.embeddings.create(
            model=EMBED_MODEL, input=texts, encoding_format="float"
        )
        # The SDK asks for base64 when no format is given, and decodes it itself.
        packed = await client.embeddings.create(model=EMBED_MODEL, input=texts)
        short = await client.embeddings.create(model=EMBED_MODEL, input=texts[0], dimensions=64)
    assert [e.index for e in floats.data] == [0, 1]
    assert len(floats.data[0].embedding) == 384
    for plain, decoded in zip(floats.data, packed.data, strict=True):
        assert decoded.embedding == pytest.approx(plain.embedding, abs=1e-6)
    assert len(short.data[0].embedding) == 64
    assert floats.usage.prompt_tokens > 0


@pytest.fixture(scope="module")
def node_packages() -> Path:
    """Where deploy/local/node-clients.sh installed tests/node's npm packages (the README's
    test command runs it); the test is skipped only where there is no node to run them."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the openai npm package cannot be driven")
    script = REPO / "deploy" / "local" / "node-clients.sh"
    found = subprocess.run(["bash", str(script), "dir"], check=True, capture_output=True, text=True)
    packages = Path(found.stdout.strip())
    assert (packages / ".installed").is_file(), (
        f"tests/node's npm packages are not in {packages}: run bash deploy/local/node-clients.sh"
    )
    return packages


async def test_the_openai_npm_package_streams_and_embeds(fleet: Fleet, node_packages: Path) -> None:
    """The official `openai` npm package, at the version tests/node locks, from node: a
    streamed completion with its usage, and embeddings as numbers and as base64."""
    env = {
        **os.environ,
        "FLEET_NODE_PACKAGES": str(node_packages),
        "OPENAI_BASE_URL": fleet.base_url,
        "OPENAI_API_KEY": API_KEY,
    }
    script = REPO / "tests" / "node" / "openai_clients.mjs"
    process = await asyncio.create_subprocess_exec(
        "node", str(script), CHAT_MODEL, EMBED_MODEL, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0
    answer = json.loads(out)
    locked = json.loads((REPO / "tests" / "node" / "package.json").read_text())
    assert answer["version"] == locked["dependencies"]["openai"]
    chunks = answer["chunks"]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello, world"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert [len(v) for v in answer["floats"]] == [384, 384]
    for plain, decoded in zip(answer["floats"], answer["packed"], strict=True):
        assert decoded == pytest.approx(plain, abs=1e-6)
    assert answer["usage"]["prompt_tokens"] > 0


async def test_a_client_that_leaves_cancels_its_job(fleet: Fleet) -> None:
    fleet.chat.piece_delay_s = 0.5  # long enough that the client leaves mid-answer
    cancelled = fleet.chat.cancelled
    try:
        async with fleet.client() as client:
            stream = await client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break  # the first token: then the client goes away
            await stream.close()
            await until(lambda: fleet.chat.cancelled == cancelled + 1, timeout_s=10)
            # Not streamed: the client's own timeout closes the connection.
            async with fleet.client(timeout=0.5) as impatient:
                with pytest.raises(openai.APITimeoutError):
                    await impatient.chat.completions.create(
                        model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}]
                    )
            await until(lambda: fleet.chat.cancelled == cancelled + 2, timeout_s=10)
            # Streamed, before the first token: the response has not begun.
            fleet.chat.delay_s = 0.5
            async with fleet.client(timeout=0.2) as impatient:
                with pytest.raises(openai.APITimeoutError):
                    await impatient.chat.completions.create(
                        model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
                    )
            await until(lambda: fleet.chat.cancelled == cancelled + 3, timeout_s=10)
    finally:
        fleet.chat.piece_delay_s = fleet.chat.delay_s = 0.0


async def test_a_client_that_leaves_at_any_point_stops_the_model_within_a_second(
    fleet: Fleet,
) -> None:
    """The client leaves at a point drawn at random (the seed is in the failure message)
    while the provider holds its call: before the first token, mid-stream, or waiting for a
    whole answer. The provider's call is cancelled, by the job's cancel on the control topic,
    within a second of the connection closing; the provider stamps when."""
    seed = random.randrange(2**32)
    draw = random.Random(seed)
    chat = fleet.chat

    async def held(stream: bool) -> float:
        """Asked, then left once the provider has the call and a random while has passed:
        the answer's task cancelled, which closes its connection. When it left."""
        calls = chat.calls
        asking = asyncio.ensure_future(
            client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], stream=stream
            )
        )
        await until(lambda: chat.calls == calls + 1, timeout_s=10)
        await asyncio.sleep(draw.uniform(0, 0.2))
        left = time.monotonic()
        asking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asking
        return left

    async def mid_stream() -> float:
        """Left after a random number of the stream's pieces."""
        stream = await client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        wanted, pieces = draw.randint(1, 4), 0
        async for chunk in stream:
            pieces += bool(chunk.choices and chunk.choices[0].delta.content)
            if pieces == wanted:
                break
        left = time.monotonic()
        await stream.close()
        return left

    async def gap(leave: Callable[[], Awaitable[float]]) -> float:
        """From the client leaving to the provider's call cancelled."""
        cancelled = chat.cancelled
        left = await leave()
        await until(lambda: chat.cancelled == cancelled + 1, timeout_s=10)
        assert chat.cancelled_at is not None
        return chat.cancelled_at - left

    gaps = {}
    pieces, chat.pieces = chat.pieces, tuple(f"{n} " for n in range(40))
    try:
        async with fleet.client(timeout=30) as client:
            # Far longer than the test: only a cancel ends the call early.
            chat.delay_s = 30
            gaps["before the first token"] = await gap(lambda: held(stream=True))
            gaps["not streamed"] = await gap(lambda: held(stream=False))
            chat.delay_s, chat.piece_delay_s = 0.0, 0.1
            gaps["mid-stream"] = await gap(mid_stream)
    finally:
        chat.delay_s = chat.piece_delay_s = 0.0
        chat.pieces = pieces
    assert all(0 <= gap < 1 for gap in gaps.values()), f"seed {seed}: {gaps}"


async def test_fleet_gateway_serves_on_the_port_it_prints(infra: Infra, tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(
        '[gateway]\napi_keys = { acme = "env:GATEWAY_TEST_KEY" }\n'
        "[gateway.rate_limits.acme]\nrequests_per_minute = 600\n"
    )
    env = {
        **os.environ,
        **infra.kafka_env(),
        "FLEET_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}",
        "GATEWAY_TEST_KEY": API_KEY,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.ops.cli", "gateway", "--config", str(config), "--port",
        "0", cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert line.startswith("fleet gateway: serving http://127.0.0.1:")
        base = line.split()[-1].removesuffix("/v1")
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/healthz")).status_code == 200
            # Ready once its tenant's client is open: waited for by asking again.
            for _ in range(200):
                if (await http.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            models = await http.get("/v1/models", headers={"authorization": f"Bearer {API_KEY}"})
        assert "smollm2-135m-instruct" in {m["id"] for m in models.json()["data"]}
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0


async def test_a_stream_outlives_its_gateway_killed_midway(
    fleet: Fleet, infra: Infra, tmp_path: Path
) -> None:
    """Gateway A, a `fleet gateway` process of its own, is killed with SIGKILL mid-stream.
    The client retries with the same Idempotency-Key through gateway B while the job still
    runs on the worker: B gets the whole answer, and the model ran once."""
    key = "gw-kill-" + uuid.uuid4().hex
    config = tmp_path / "fleet.toml"
    config.write_text(
        # The listing `fleet gateway` serves: the scripted model alone, which the worker
        # runs (the provider named here is only asked for its models' names).
        "embeddings = []\ntranscription = []\n"
        '[gateway]\napi_keys = { acme = "env:GATEWAY_TEST_KEY" }\n'
        '[tenant_keys]\nacme = "env:GATEWAY_TEST_SIGNING_KEY"\n'
        f'[[chat]]\nname = "openai"\nconfig = {{ base_url = "http://127.0.0.1:9/v1", '
        f'models = ["{CHAT_MODEL}"] }}\n'
    )
    env = {
        **os.environ,
        **infra.kafka_env(),
        "FLEET_NAMESPACE": fleet.namespace,
        "GATEWAY_TEST_KEY": API_KEY,
        "GATEWAY_TEST_SIGNING_KEY": fleet.signing["acme"].reveal(),
    }
    jobs = await fleet.chat_jobs()
    calls = fleet.chat.calls
    fleet.chat.gate = gate = asyncio.Event()  # the model holds its answer after "Hello"
    gateway_a = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.ops.cli", "gateway", "--config", str(config), "--port",
        "0", cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip

    async def stream_text(client: openai.AsyncOpenAI) -> str:
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            extra_headers={"Idempotency-Key": key},
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    try:
        assert gateway_a.stdout is not None
        line = (await asyncio.wait_for(gateway_a.stdout.readline(), timeout=60)).decode()
        async with openai.AsyncOpenAI(
            base_url=line.split()[-1], api_key=API_KEY, max_retries=0
        ) as via_a:
            stream = await via_a.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
                extra_headers={"Idempotency-Key": key},
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
            gateway_a.kill()  # mid-stream: the model has sent "Hello" and holds the rest
            assert await gateway_a.wait() == -signal.SIGKILL
            await stream.close()
        async with fleet.client() as via_b:
            retried = asyncio.ensure_future(stream_text(via_b))
            # B's job is on the topic, so the worker meets it while A's job still runs.
            await asyncio.wait_for(fleet.until_chat_jobs(jobs + 2), timeout=30)
            assert not retried.done()
            gate.set()
            text = await asyncio.wait_for(retried, timeout=30)
    finally:
        fleet.chat.gate = None
        gate.set()
        if gateway_a.returncode is None:
            gateway_a.kill()
            await gateway_a.wait()
    assert chunk.choices[0].delta.content == "Hello"
    assert text == "Hello, world"
    assert fleet.chat.calls == calls + 1


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    code: str | None  # the error's


async def test_requests_past_the_tenant_cap_are_429_at_once(fleet: Fleet) -> None:
    """Ten requests, a cap of four: six are refused with Retry-After while the four admitted
    are still held by the model, and every answer comes before its deadline (the client's
    timeout; none is retried)."""
    fleet.chat.gate = gate = asyncio.Event()
    calls = fleet.chat.calls
    try:
        async with fleet.client(timeout=30) as client:

            async def ask() -> Answer:
                try:
                    raw = await client.chat.completions.with_raw_response.create(
                        model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}]
                    )
                except openai.RateLimitError as exc:
                    return Answer(exc.status_code, dict(exc.response.headers), exc.code)
                return Answer(raw.status_code, dict(raw.headers), None)

            asking = [asyncio.ensure_future(ask()) for _ in range(10)]
            refused = []
            # Bounded: were nothing refused, all ten would wait at the gate.
            for done in asyncio.as_completed(asking, timeout=30):
                refused.append(await done)
                if len(refused) == 6:
                    break
            # The four admitted are at the model, held there, while the six were answered.
            await until(lambda: fleet.chat.calls == calls + 4, timeout_s=10)
            assert fleet.gateway.state.admission.requests == 4
            gate.set()
            answers = await asyncio.gather(*asking)
    finally:
        fleet.chat.gate = None
    assert [r.status for r in refused] == [429] * 6
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert all(r.code == "gateway_at_capacity" for r in refused)
    assert sorted(r.status for r in answers) == [200] * 4 + [429] * 6
    for response in answers:
        assert float(response.headers["x-fleet-gateway-overhead-ms"]) >= 0
    assert fleet.gateway.state.admission.requests == 0  # every ticket given back
    assert fleet.chat.calls == calls + 4


async def test_the_overhead_header_leaves_out_the_wait_for_the_fleet(fleet: Fleet) -> None:
    fleet.chat.delay_s = 0.5  # the model's time: not the gateway's
    try:
        async with fleet.client() as client:
            raw = await client.chat.completions.with_raw_response.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}]
            )
    finally:
        fleet.chat.delay_s = 0.0
    assert raw.status_code == 200
    assert 0 <= float(raw.headers["x-fleet-gateway-overhead-ms"]) < 500


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _metrics(http: httpx.AsyncClient) -> Samples:
    """What the gateway's /metrics says, by sample name and labels."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST  # Prometheus's text format
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_metrics_count_requests_by_route_status_and_tenant(fleet: Fleet) -> None:
    """A request held at the model is in flight; once answered it is counted under its
    route, status and tenant, with its latency and the gateway's overhead; a bad key is
    counted without a tenant."""
    chat = "/v1/chat/completions"
    fleet.chat.gate = gate = asyncio.Event()
    calls = fleet.chat.calls
    base = fleet.base_url.removesuffix("/v1")
    try:
        async with fleet.client() as client, httpx.AsyncClient(base_url=base) as http:
            before = await _metrics(http)
            held = asyncio.ensure_future(
                client.chat.completions.create(
                    model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}]
                )
            )
            await until(lambda: fleet.chat.calls == calls + 1, timeout_s=10)
            during = await _metrics(http)
            gate.set()
            await held
            async with fleet.client(api_key="sk-wrong") as stranger:
                with pytest.raises(openai.AuthenticationError):
                    await stranger.models.list()
            after = await _metrics(http)
    finally:
        fleet.chat.gate = None
        gate.set()
    assert _grew(before, during, "fleet_gateway_requests_in_flight") == 1
    assert _grew(during, after, "fleet_gateway_requests_in_flight") == -1
    answered = {"route": chat, "status": "200", "tenant": "acme"}
    assert _grew(before, after, "fleet_gateway_requests_total", **answered) == 1
    refused = {"route": "/v1/models", "status": "401", "tenant": ""}
    assert _grew(before, after, "fleet_gateway_requests_total", **refused) == 1
    assert _grew(before, after, "fleet_gateway_request_duration_seconds_count", route=chat) == 1
    assert _grew(before, after, "fleet_gateway_overhead_seconds_count", route=chat) == 1
    # The overhead leaves out the time the request waited at the model.
    waited = _grew(before, after, "fleet_gateway_request_duration_seconds_sum", route=chat)
    overhead = _grew(before, after, "fleet_gateway_overhead_seconds_sum", route=chat)
    assert 0 < overhead < waited


async def test_hostile_bodies_are_refused_before_kafka(fleet: Fleet) -> None:
    jobs = await fleet.chat_jobs()
    url = f"{fleet.base_url}/chat/completions"
    auth = {"authorization": f"Bearer {API_KEY}"}
    big = b'{"model": "' + b"x" * LIMITS.max_body_bytes + b'"}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    # Side by side with the rest (each waits for a deadline): a client that drips its head
    # a byte at a time, and one that connects and sends nothing.
    heads = asyncio.gather(_dripping_head(fleet.gateway), _silent(fleet.gateway))
    async with httpx.AsyncClient(headers=auth) as http:
        declared = await http.post(url, content=big)
        counted = await http.post(url, content=chunks())
    # A client that sends its head and a little of its body, then nothing more.
    reader, writer = await asyncio.open_connection(fleet.gateway.host, fleet.gateway.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {API_KEY}\r\ncontent-length: 100\r\n\r\n".encode()
        + b'{"model": '
    )
    await writer.drain()
    dripped = await asyncio.wait_for(reader.read(4096), timeout=LIMITS.body_timeout_s + 10)
    writer.close()
    assert declared.status_code == counted.status_code == 413
    assert (
        declared.json()["error"]["code"] == counted.json()["error"]["code"] == "request_too_large"
    )
    assert "x-fleet-gateway-overhead-ms" in declared.headers
    assert dripped.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in dripped
    dripped_head, silent = await heads
    assert dripped_head.startswith(b"HTTP/1.1 408 ")  # then closed: read() reached its end
    assert b'"code":"request_timeout"' in dripped_head
    assert b"headers were not complete within 1 s" in dripped_head
    assert silent == b""  # closed without a word
    assert await fleet.chat_jobs() == jobs


async def _dripping_head(gateway: Gateway) -> bytes:
    """A client that asks once, then, on the kept-alive connection, sends its next
    request's head a byte every 50 ms and would take minutes to finish it: all the gateway
    sends it after the first answer, before closing the connection."""
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), timeout=10)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nx-drip: " + b"a" * 4096

    async def drip() -> None:
        with contextlib.suppress(ConnectionError):  # the gateway closed it
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

    dripping = asyncio.ensure_future(drip())
    try:
        return await asyncio.wait_for(reader.read(), timeout=LIMITS.header_timeout_s + 10)
    finally:
        dripping.cancel()
        writer.close()


async def _silent(gateway: Gateway) -> bytes:
    """A client that connects and sends nothing: all it reads before the connection ends."""
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    try:
        return await asyncio.wait_for(reader.read(), timeout=LIMITS.header_timeout_s + 10)
    finally:
        writer.close()


def _readme_block(language: str) -> str:
    """The README's fenced ``language`` block of its "Use any OpenAI client" section."""
    section = (REPO / "README.md").read_text().split("## Use any OpenAI client", 1)[1]
    block = section.split(f"```{language}\n", 1)[1].split("```", 1)[0]
    return block


def _against(fleet: Fleet, snippet: str) -> str:
    """A README snippet aimed at this test's gateway and scripted model."""
    return snippet.replace("http://127.0.0.1:8000/v1", fleet.base_url).replace(
        "smollm2-135m-instruct", CHAT_MODEL
    )


async def test_the_readmes_python_snippet_runs(fleet: Fleet) -> None:
    code = _against(fleet, _readme_block("python"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env={**os.environ, "FLEET_API_KEY": API_KEY},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0
    assert out.decode() == "Hello, world\n"


async def test_the_readmes_node_snippet_streams(fleet: Fleet, node_packages: Path) -> None:
    """Run as a module from the directory the npm packages are in, as a project of the
    reader's own would (its ``import "openai"`` resolves there)."""
    code = _against(fleet, _readme_block("js"))
    process = await asyncio.create_subprocess_exec(
        "node", "--input-type=module", "-e", code, cwd=node_packages,
        env={**os.environ, "FLEET_API_KEY": API_KEY}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0
    assert out.decode() == "Hello, world"


async def test_the_readmes_curl_snippet_streams(fleet: Fleet) -> None:
    """curl -N prints the first token while the model still holds the rest."""
    script = _against(fleet, _readme_block("sh"))
    assert script.startswith("curl -N ")
    fleet.chat.gate = gate = asyncio.Event()
    try:
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", script, env={**os.environ, "FLEET_API_KEY": API_KEY},
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        before = b""
        while b'"content":"Hello"' not in before:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
            assert line, "curl ended before the first token"
            before += line
        assert b"[DONE]" not in before
        gate.set()
        rest = await asyncio.wait_for(process.stdout.read(), timeout=30)
        assert await process.wait() == 0
    finally:
        fleet.chat.gate = None
        gate.set()
    assert rest.rstrip().endswith(b"data: [DONE]")
    assert b'"content":", "' in rest


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A short spoken clip (a WAV of about 70 KB)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("run deploy/local/system-packages.sh")
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Kafka carries the jobs."], check=True)
    return wav.read_bytes()


async def test_an_uploaded_clip_is_transcribed_as_timed_segments_and_as_text(
    fleet: Fleet, speech: bytes
) -> None:
    """Transcribed once: the same Idempotency-Key asked again, in another format, is
    answered from the job's stored result."""
    key = {"Idempotency-Key": "gw-" + uuid.uuid4().hex}
    async with fleet.client() as client:
        verbose = await client.audio.transcriptions.create(
            file=("speech.wav", speech, "audio/wav"),
            model=WHISPER_MODEL,
            language="en",
            temperature=0,
            response_format="verbose_json",
            timestamp_granularities=["segment"],
            extra_headers=key,
        )
        plain = await client.audio.transcriptions.create(
            file=("speech.wav", speech), model=WHISPER_MODEL, extra_headers=key
        )
    assert "kafka" in verbose.text.lower()
    assert "jobs" in verbose.text.lower()
    assert verbose.language == "en"
    assert 1 < verbose.duration < 3
    assert verbose.segments
    assert " ".join(s.text for s in verbose.segments) == verbose.text
    assert verbose.segments[-1].end <= verbose.duration + 0.5
    assert plain.text == verbose.text


async def test_a_transcription_the_fleet_cannot_honour_is_refused_before_kafka(
    fleet: Fleet, speech: bytes
) -> None:
    jobs = await fleet.chat_jobs("transcribe")
    clip = ("speech.wav", speech)
    refused: dict[str, openai.APIStatusError] = {}
    async with fleet.client() as client:
        for field, options in {
            "prompt": {"prompt": "Kafka, Redis"},
            "temperature": {"temperature": 0.4},
            "response_format": {"response_format": "diarized_json"},
            "timestamp_granularities": {
                "response_format": "verbose_json",
                "timestamp_granularities": ["word"],
            },
            "chunking_strategy": {"chunking_strategy": "auto"},
        }.items():
            with pytest.raises(openai.BadRequestError) as caught:
                await client.audio.transcriptions.create(
                    file=clip,
                    model=WHISPER_MODEL,
                    **options,  # type: ignore[arg-type]
                )
            refused[field] = caught.value
        with pytest.raises(openai.NotFoundError) as unserved:
            await client.audio.transcriptions.create(file=clip, model=CHAT_MODEL)
        with pytest.raises(openai.APIStatusError) as too_large:
            await client.audio.transcriptions.create(
                file=("long.wav", bytes(LIMITS.max_body_bytes)), model=WHISPER_MODEL
            )
    assert {field: error.param for field, error in refused.items()} == {
        field: field for field in refused
    }
    assert all(error.type == "invalid_request_error" for error in refused.values())
    assert unserved.value.code == "model_not_found"
    assert "served for chat completions" in unserved.value.message
    assert too_large.value.status_code == 413
    assert await fleet.chat_jobs("transcribe") == jobs


IMAGE = "data:image/png;base64,iVBORw0KGgo="
WEATHER: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a place",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def _replaying(fleet: Fleet, *streams: str) -> Replay:
    """The upstream, answering the next calls with these recorded streams."""
    fleet.upstream.steps.clear()
    fleet.upstream.requests.clear()
    for stream in streams:
        fleet.upstream.sse(f"openai/{stream}")
    return fleet.upstream


async def test_a_tool_loop_with_every_chat_option_reaches_the_model(fleet: Fleet) -> None:
    """The SDK's own tools loop: the model asks for a tool, the caller appends the answer's
    message as it came and the tool's result, the model answers; images, seed, penalties
    and user reach the model's API as OpenAI spells them."""
    upstream = _replaying(fleet, "chat_stream_tools.sse", "chat_stream_after_tools.sse")
    question: ChatCompletionUserMessageParam = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Weather where this photo was taken?"},
            {"type": "image_url", "image_url": {"url": IMAGE}},
        ],
    }
    async with fleet.client() as client:
        asked = await client.chat.completions.create(
            model=UPSTREAM_MODEL,
            messages=[question],
            tools=[WEATHER],
            tool_choice="auto",
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            user="end-user-1",
        )
        turn = asked.choices[0].message
        assert turn.tool_calls is not None
        call = turn.tool_calls[0]
        assert call.type == "function"
        result: ChatCompletionToolMessageParam = {
            "role": "tool",
            "tool_call_id": call.id,
            "content": '{"temp": 3}',
        }
        # The answer's message appended as it came, as the SDK's users do.
        history: list[Any] = [question, turn, result]
        stream = await client.chat.completions.create(
            model=UPSTREAM_MODEL,
            messages=history,
            tools=[WEATHER],
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert asked.choices[0].finish_reason == "tool_calls"
    assert turn.content is None
    assert call.function.name == "get_weather"
    assert "location" in json.loads(call.function.arguments)
    assert text == "It is 3 °C in Oslo and 6 °C in Bergen; in Oslo it is 14:05."
    first, second = (json.loads(request.content) for request in upstream.requests)
    assert first["tools"] == [WEATHER]
    assert first["tool_choice"] == "auto"
    assert (first["seed"], first["presence_penalty"], first["frequency_penalty"]) == (7, 0.5, -0.5)
    assert first["user"] == "end-user-1"
    assert first["messages"][0]["content"][1]["image_url"]["url"] == IMAGE
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    assert second["messages"][1]["tool_calls"][0]["id"] == call.id
    assert (
        second["messages"][1]["tool_calls"][0]["function"]["arguments"] == call.function.arguments
    )
    assert second["messages"][2]["tool_call_id"] == call.id


class Person(pydantic.BaseModel):
    name: str
    age: int


async def test_a_json_schema_answer_parses_into_the_callers_type(fleet: Fleet) -> None:
    """The SDK's `parse`: a pydantic type sent as a strict JSON schema, the answer (checked
    against it by the worker) parsed back into the type."""
    upstream = _replaying(fleet, "chat_stream_json_schema.sse")
    async with fleet.client() as client:
        answer = await client.chat.completions.parse(
            model=UPSTREAM_MODEL,
            messages=[{"role": "user", "content": "Who wrote the first program, and her age?"}],
            response_format=Person,
        )
    assert answer.choices[0].message.parsed == Person(name="Ada Lovelace", age=36)
    sent = json.loads(upstream.requests[0].content)["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "Person"
    assert sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["required"] == ["name", "age"]


async def test_what_a_model_cannot_honour_is_400_naming_it(fleet: Fleet) -> None:
    """The scripted model has no tools, images, JSON output or sampling options: each is
    refused by its worker before the model runs, and answered 400 naming it."""
    calls = fleet.chat.calls
    hello = {"role": "user", "content": "Hi"}
    asks: dict[str, dict[str, object]] = {
        "tools": {"tools": [WEATHER]},
        "images": {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE}}]}
            ]
        },
        "response_format json_schema": {
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {}}}
        },
        "presence_penalty": {"presence_penalty": 0.5},
        "frequency_penalty": {"frequency_penalty": 0.5},
        "user": {"user": "end-user-1"},
    }
    refused = {}
    async with fleet.client() as client:
        for field, ask in asks.items():
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(
                    **{"model": CHAT_MODEL, "messages": [hello], **ask}  # type: ignore[call-overload]
                )
            refused[field] = caught.value
    assert {f: e.code for f, e in refused.items()} == {f: "invalid_input" for f in asks}
    for field, error in refused.items():
        assert f"does not support {field}" in error.message
    assert fleet.chat.calls == calls


async def test_a_key_past_its_requests_per_minute_is_429_with_retry_after(
    fleet: Fleet, infra: Infra
) -> None:
    """The shared limit, as ``fleet gateway`` builds it from ``[gateway.rate_limits]``: the
    third request in the minute is refused at once, and never reaches the model."""
    redis = connect_redis(infra.redis_url)
    limiter = RedisRateLimiter(
        redis, f"gateway:{fleet.namespace}:acme", RateLimit(requests_per_minute=2)
    )
    unlimited, fleet.gateway.state.rates = fleet.gateway.state.rates, KeyRates({"acme": limiter})
    calls = fleet.chat.calls
    try:
        async with fleet.client() as client:
            for _ in range(2):
                await client.chat.completions.create(
                    model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}]
                )
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(
                    model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}]
                )
    finally:
        fleet.gateway.state.rates = unlimited
        await redis.delete(*limiter.redis_keys)
        await redis.aclose()
    assert caught.value.code == "rate_limit_exceeded"
    assert 0 < int(caught.value.response.headers["retry-after"]) <= 60
    assert fleet.chat.calls == calls + 2
    assert fleet.gateway.state.admission.requests == 0  # the refused one's ticket given back


# Files and batches: a JSONL file uploaded, a batch made of it, run by the real coordinator
# and the scripted generate worker, its result files downloaded in OpenAI's line shapes.


def chat_row(custom_id: str, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": f"Hi from {custom_id}"}]
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": CHAT_MODEL, "messages": messages, **body},
    }


def jsonl(*rows: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


async def until_ended(client: openai.AsyncOpenAI, batch_id: str) -> openai.types.Batch:
    """The batch once it has ended, polled as OpenAI's clients do (for at most a minute)."""
    for _ in range(600):
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not end within a minute")


async def file_content(client: openai.AsyncOpenAI, file_id: str | None) -> bytes:
    assert file_id is not None
    return (await client.files.content(file_id)).content


def lines_of(content: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in content.splitlines()]


async def test_a_batch_from_upload_to_its_output_and_error_files(fleet: Fleet) -> None:
    """One file, two batches: one cancelled while the model holds the rows, the other run to
    the end once it lets go; then each tenant's view."""
    # Three rows the model answers, one it refuses (the scripted provider cannot seed).
    data = jsonl(chat_row("a"), chat_row("b", max_tokens=8), chat_row("c"), chat_row("d", seed=7))
    fleet.chat.gate = gate = asyncio.Event()  # every row held at the model
    try:
        async with fleet.client() as client, fleet.client(api_key=OTHER_KEY) as other:
            uploaded = await client.files.create(file=("rows.jsonl", data), purpose="batch")
            held = await client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                # OpenAI takes 24h only; the fleet honours any whole hours.
                completion_window="1h",  # type: ignore[arg-type]
            )
            created = await client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"team": "search"},
            )
            cancelling = await client.batches.cancel(held.id)
            cancelled = await until_ended(client, held.id)
            with pytest.raises(openai.ConflictError):
                await client.batches.cancel(held.id)
            gate.set()
            batch = await until_ended(client, created.id)
            output_file, error_file, listed, stored, output_meta = await asyncio.gather(
                file_content(client, batch.output_file_id),
                file_content(client, batch.error_file_id),
                client.batches.list(limit=1),
                client.files.retrieve(uploaded.id),
                client.files.retrieve(batch.output_file_id or ""),
            )
            # To another tenant each id of acme's is one that does not exist.
            for missing in await asyncio.gather(
                other.batches.retrieve(created.id),
                other.files.content(uploaded.id),
                return_exceptions=True,
            ):
                assert isinstance(missing, openai.NotFoundError)
    finally:
        fleet.chat.gate = None
        gate.set()
    assert (uploaded.purpose, uploaded.bytes, uploaded.filename) == (
        "batch",
        len(data),
        "rows.jsonl",
    )
    assert (stored.id, stored.bytes, stored.filename) == (uploaded.id, len(data), "rows.jsonl")
    assert (cancelling.status, cancelled.status) == ("cancelling", "cancelled")
    assert cancelled.completion_window == "1h"
    assert cancelled.output_file_id is None  # no row finished: all are in the error file
    assert cancelled.error_file_id is not None
    assert (created.status, created.input_file_id) == ("validating", uploaded.id)
    assert created.metadata == {"team": "search"}
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (4, 3)
    assert batch.completion_window == "24h"
    output, errors = lines_of(output_file), lines_of(error_file)
    assert (output_meta.purpose, output_meta.bytes) == ("batch_output", len(output_file))
    # Every custom_id in exactly one of the two files.
    assert sorted(line["custom_id"] for line in output + errors) == ["a", "b", "c", "d"]
    for line in output:
        assert line["id"].startswith("batch_req_")
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == "Hello, world"
    (refused,) = errors
    assert refused["custom_id"] == "d"
    assert refused["response"]["status_code"] == 400
    assert refused["response"]["body"]["error"]["code"] == "invalid_input"
    # Newest first, a page of one, the cancelled batch on the next.
    assert ([b.id for b in listed.data], listed.has_more) == ([created.id], True)


class Refusal(NamedTuple):
    status: int
    param: str | None
    message: str


async def test_a_bad_upload_is_400_naming_its_line_and_nothing_is_kept(
    fleet: Fleet, infra: Infra
) -> None:
    ok = json.dumps(chat_row("ok")).encode() + b"\n"
    uploads = {
        "not json": ok + b"{not json\n",
        "a field not honoured": ok + json.dumps(chat_row("w", logit_bias={"1": 2})).encode(),
        "an endpoint not served": ok
        + json.dumps({**chat_row("e"), "url": "/v1/completions"}).encode(),
    }
    before = await topic_names(infra)
    refusals: dict[str, Refusal] = {}
    async with fleet.client() as client:
        for what, data in uploads.items():
            with pytest.raises(openai.BadRequestError) as caught:
                await client.files.create(file=("bad.jsonl", data), purpose="batch")
            error = caught.value
            assert isinstance(error.body, dict)
            refusals[what] = Refusal(error.status_code, error.param, error.body["message"])
        with pytest.raises(openai.BadRequestError) as purpose:
            await client.files.create(file=("ok.jsonl", ok), purpose="fine-tune")
        big = ok * (LIMITS.max_body_bytes // len(ok) + 1)
        with pytest.raises(openai.APIStatusError) as too_large:
            await client.files.create(file=("big.jsonl", big), purpose="batch")
        with pytest.raises(openai.NotFoundError) as missing:
            await client.batches.create(
                input_file_id="file-nowhere",
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
    for refusal in refusals.values():
        assert refusal.status == 400
        assert refusal.param == "file"
        assert refusal.message.startswith("bad.jsonl:2: ")
    assert "logit_bias" in refusals["a field not honoured"].message
    assert "/v1/completions" in refusals["an endpoint not served"].message
    assert purpose.value.param == "purpose"
    assert (too_large.value.status_code, too_large.value.code) == (413, "request_too_large")
    assert missing.value.param == "input_file_id"
    prefix = file_topic("", fleet.namespace)
    assert {t for t in await topic_names(infra) - before if t.startswith(prefix)} == set()
