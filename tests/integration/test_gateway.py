"""The HTTP gateway driven by a client no one here wrote, the official `openai` package,
against real workers: a generate worker with a scripted chat provider and the local MiniLM
embed worker, through the real broker, with the workers verifying tenant signatures."""

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
from typing import NamedTuple

import httpx
import openai
import pytest

from contracts.gateway_limits import GatewayLimits
from contracts.names import request_topic
from contracts.secrets import Secret
from gateway import Gateway
from providers.router import ModelRouter
from tests.conftest import REPO, Infra
from tests.integration.harness import serving, until
from tests.integration.scripted_chat import ScriptedChat
from transport.connection import KafkaConnection
from transport.topic_reader import read_to_end
from workers import Worker, WorkerSettings, build_worker
from workers.handlers.generate import GenerateHandler

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]

CHAT_MODEL = "scripted-model"
EMBED_MODEL = "all-minilm-l6-v2"
API_KEY = "sk-acme-" + uuid.uuid4().hex


# Small enough for the tests to pass them (the defaults are far larger).
LIMITS = GatewayLimits(tenant_max_requests_in_flight=4, max_body_bytes=64 * 1024, body_timeout_s=2)


class Fleet:
    def __init__(
        self, chat: ScriptedChat, gateway: Gateway, connection: KafkaConnection, namespace: str
    ) -> None:
        self.chat = chat
        self.gateway = gateway
        self.connection = connection
        self.namespace = namespace

    @property
    def base_url(self) -> str:
        return f"http://{self.gateway.host}:{self.gateway.port}/v1"

    async def chat_jobs(self) -> int:
        """How many records the generate request topic holds."""
        topic = request_topic("generate", self.namespace)
        return len([record async for record in read_to_end(self.connection, topic)])

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
    signing = {"acme": Secret("acme-signing-" + uuid.uuid4().hex)}
    settings = WorkerSettings(
        bootstrap_servers=infra.bootstrap_servers,
        kafka=infra.security,
        redis_url=infra.redis_url,
        namespace=f"test-{uuid.uuid4().hex[:12]}",
        partitions=1,
        concurrency=4,
        shutdown_grace_s=5,
        tenant_keys=signing,  # the workers run only jobs signed as their tenant
    )
    chat = ScriptedChat()
    generate = Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat])))
    gateway = Gateway(
        infra.connection,
        namespace=settings.namespace,
        api_keys={"acme": Secret(API_KEY)},
        tenant_keys=signing,
        models={CHAT_MODEL: "generate", EMBED_MODEL: "embed"},
        limits=LIMITS,
        port=0,
    )
    async with (
        serving(generate),
        serving(await build_worker("embed", settings)),
        gateway.running(),
    ):
        yield Fleet(chat, gateway, infra.connection, settings.namespace)


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
    assert listed == [EMBED_MODEL, CHAT_MODEL]


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
    config.write_text('[gateway]\napi_keys = { acme = "env:GATEWAY_TEST_KEY" }\n')
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


async def test_hostile_bodies_are_refused_before_kafka(fleet: Fleet) -> None:
    jobs = await fleet.chat_jobs()
    url = f"{fleet.base_url}/chat/completions"
    auth = {"authorization": f"Bearer {API_KEY}"}
    big = b'{"model": "' + b"x" * LIMITS.max_body_bytes + b'"}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

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
    assert await fleet.chat_jobs() == jobs


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
