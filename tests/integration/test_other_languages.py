"""The kcat example of docs/other-languages.md, run as it stands against a real worker: a
producer that is not Python, with only the docs, gets its answer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator

import pytest

from contracts.names import shared_reply_topic
from providers.router import ModelRouter
from tests.conftest import REPO, Infra
from tests.integration.harness import serving
from tests.integration.scripted_chat import ScriptedChat
from transport.topic_admin import ensure_topics
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.private_kafka,  # the example talks to a plain listener
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("kcat") is None, reason="run deploy/local/system-packages.sh"),
]

DOC = REPO / "docs" / "other-languages.md"


def _example() -> str:
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 1, "docs/other-languages.md should hold one sh block: the example"
    return blocks[0]


@pytest.fixture
async def worker(settings: WorkerSettings) -> AsyncIterator[Worker]:
    chat = ScriptedChat(pieces=("Hello", ", ", "Kafka"))
    async with serving(
        Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat])))
    ) as worker:
        yield worker


async def test_the_kcat_example_gets_its_answer(
    infra: Infra, namespace: str, worker: Worker
) -> None:
    await ensure_topics(infra.connection, {shared_reply_topic("kcat-demo", namespace): 2})
    env = {**os.environ, "BROKER": infra.bootstrap_servers, "NS": namespace,
           "MODEL": "scripted-model"}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", _example(), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    chunks = [json.loads(line.split("\t", 1)[1]) for line in out.decode().splitlines()]
    assert [c["kind"] for c in chunks] == ["delta", "delta", "delta", "generate_result"]
    assert [c["seq"] for c in chunks] == [0, 1, 2, 3]
    assert chunks[-1]["text"] == "Hello, Kafka"
