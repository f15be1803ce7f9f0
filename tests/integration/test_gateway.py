"""The HTTP gateway driven by a client no one here wrote, the official `openai` package,
against real workers: a generate worker with a scripted chat provider and the local MiniLM
embed worker, through the real broker, with the workers verifying tenant signatures."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from contracts.secrets import Secret
from gateway import Gateway
from providers.router import ModelRouter
from tests.conftest import REPO, Infra
from tests.integration.harness import serving, until
from tests.integration.scripted_chat import ScriptedChat
from workers import Worker, WorkerSettings, build_worker
from workers.handlers.generate import GenerateHandler

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]

CHAT_MODEL = "scripted-model"
EMBED_MODEL = "all-minilm-l6-v2"
API_KEY = "sk-acme-" + uuid.uuid4().hex


class Fleet:
    def __init__(self, chat: ScriptedChat, gateway: Gateway) -> None:
        self.chat = chat
        self.gateway = gateway

    def client(self, api_key: str = API_KEY, **options: float) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"http://{self.gateway.host}:{self.gateway.port}/v1",
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
        port=0,
    )
    async with (
        serving(generate),
        serving(await build_worker("embed", settings)),
        gateway.running(),
    ):
        yield Fleet(chat, gateway)


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
