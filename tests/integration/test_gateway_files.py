"""The gateway's file list and file delete, driven by the official `openai` package through
the real broker: each tenant lists and deletes its own uploaded files only, the list's
query parameters are honoured or refused naming them, and a batch made of a file runs to
its end when the file is deleted under it. A gateway alone serves the files (no model): a
scripted generate worker and a batch coordinator join only for the batch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import msgspec
import openai
import pytest

from contracts.names import file_topic
from contracts.secrets import Secret
from gateway import Gateway
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.conftest import worker_settings
from tests.integration.harness import serving, topic_names, until
from tests.integration.scripted_chat import ScriptedChat
from tests.integration.test_batches import coordinator
from tests.integration.test_gateway import (
    API_KEY,
    CHAT_MODEL,
    OTHER_KEY,
    chat_row,
    jsonl,
    lines_of,
    until_ended,
)
from workers import Worker
from workers.handlers.generate import GenerateHandler

pytestmark = [pytest.mark.kafka]

_SIGNING = {t: Secret(f"{t}-signing-{uuid.uuid4().hex}") for t in ("acme", "globex")}


@asynccontextmanager
async def gateway_in(infra: Infra, namespace: str) -> AsyncIterator[Gateway]:
    """A gateway serving ``namespace`` for two tenants, acme (``API_KEY``) and globex
    (``OTHER_KEY``), that knows the scripted chat model."""
    gateway = Gateway(
        infra.connection,
        namespace=namespace,
        api_keys={"acme": Secret(API_KEY), "globex": Secret(OTHER_KEY)},
        tenant_keys=_SIGNING,
        models={CHAT_MODEL: "generate"},
        port=0,
    )
    async with gateway.running():
        yield gateway


def client_of(gateway: Gateway, api_key: str) -> openai.AsyncOpenAI:
    base_url = f"http://{gateway.host}:{gateway.port}/v1"
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)


async def _upload(client: openai.AsyncOpenAI, name: str) -> openai.types.FileObject:
    data = jsonl(chat_row(f"{name}-1"), chat_row(f"{name}-2"))
    return await client.files.create(file=(name, data), purpose="batch")


async def _ids(files: AsyncIterable[openai.types.FileObject]) -> list[str]:
    return [file.id async for file in files]


async def test_each_tenant_lists_and_deletes_its_own_files_only(
    infra: Infra, namespace: str
) -> None:
    async with (
        gateway_in(infra, namespace) as gateway,
        client_of(gateway, API_KEY) as acme,
        client_of(gateway, OTHER_KEY) as globex,
    ):
        first, theirs = await asyncio.gather(
            _upload(acme, "first.jsonl"), _upload(globex, "theirs.jsonl")
        )
        second = await _upload(acme, "second.jsonl")  # after the first: the newer
        # Oldest first, a page at a time: the client follows `after` from page to page.
        paged = asyncio.create_task(_ids(acme.files.list(order="asc", limit=1)))
        listed, globex_listed, one_page, batch_files, other_purpose = await asyncio.gather(
            acme.files.list(),
            globex.files.list(),
            acme.files.list(order="asc", limit=1),
            acme.files.list(purpose="batch"),
            acme.files.list(purpose="fine-tune"),
        )
        paged_ids = await paged

        # To globex, acme's file is one that does not exist: not deleted, not seen.
        with pytest.raises(openai.NotFoundError) as not_theirs:
            await globex.files.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            await globex.files.retrieve(first.id)

        deleted = await acme.files.delete(first.id)
        gone = await asyncio.gather(
            acme.files.retrieve(first.id),
            acme.files.content(first.id),
            acme.files.delete(first.id),
            return_exceptions=True,
        )
        after_delete = await acme.files.list()
        left = await acme.files.retrieve(second.id)

    assert [f.id for f in listed.data] == [second.id, first.id]  # newest first
    assert listed.data == [second, first]  # as the upload (and retrieve) gave them
    assert listed.has_more is False
    assert [f.id for f in globex_listed.data] == [theirs.id]
    assert paged_ids == [first.id, second.id]
    assert ([f.id for f in one_page.data], one_page.has_more) == ([first.id], True)
    assert [f.id for f in batch_files.data] == [second.id, first.id]
    assert other_purpose.data == []
    assert not_theirs.value.param == "file_id"
    assert (deleted.id, deleted.object, deleted.deleted) == (first.id, "file", True)
    for missing in gone:
        assert isinstance(missing, openai.NotFoundError)
    assert [f.id for f in after_delete.data] == [second.id]
    assert left == second
    topics = await topic_names(infra)
    assert file_topic(first.id, namespace) not in topics
    assert {file_topic(second.id, namespace), file_topic(theirs.id, namespace)} <= topics


async def test_what_the_list_and_delete_cannot_honour_is_400_naming_it(
    infra: Infra, namespace: str
) -> None:
    async with gateway_in(infra, namespace) as gateway, client_of(gateway, API_KEY) as acme:
        await _upload(acme, "rows.jsonl")
        calls: dict[str, Awaitable[object]] = {
            "bogus": acme.files.list(extra_query={"bogus": "1"}),
            "order": acme.files.list(extra_query={"order": "sideways"}),
            "limit": acme.files.list(limit=10_001),
            "after": acme.files.list(after="file-nowhere"),
            "purpose": acme.files.list(purpose="batch_output"),
            "file_id": acme.files.delete("file-output-batch_1"),
        }
        refused = await asyncio.gather(*calls.values(), return_exceptions=True)
    for param, refusal in zip(calls, refused, strict=True):
        assert isinstance(refusal, openai.BadRequestError), (param, refusal)
        assert refusal.param == param


@pytest.mark.redis
async def test_a_batch_runs_to_its_end_when_its_input_file_is_deleted(
    infra: Infra, namespace: str
) -> None:
    """The batch's rows were copied to its own input topic when it was made: the rows the
    model holds when the file goes, and those not sent yet, are all answered."""
    # The workers run only jobs signed as their tenant, as the gateway signs them.
    settings = msgspec.structs.replace(worker_settings(infra, namespace), tenant_keys=_SIGNING)
    chat = ScriptedChat()
    chat.gate = gate = asyncio.Event()
    worker = Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat])))
    async with (
        serving(worker),
        coordinator(settings),
        gateway_in(infra, namespace) as gateway,
        client_of(gateway, API_KEY) as acme,
    ):
        uploaded = await _upload(acme, "rows.jsonl")
        batch = await acme.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        await until(lambda: chat.calls > 0)  # a row at the model: the batch is running
        await acme.files.delete(uploaded.id)
        gate.set()
        ended = await until_ended(acme, batch.id)
        assert ended.output_file_id is not None
        output = lines_of((await acme.files.content(ended.output_file_id)).content)
    assert ended.status == "completed"
    assert ended.input_file_id == uploaded.id  # naming a file that is gone, as OpenAI's does
    assert sorted(line["custom_id"] for line in output) == ["rows.jsonl-1", "rows.jsonl-2"]
