"""The generate handler with response_format and content parts (no broker): answers checked
against the schema (output_invalid, and nothing saved, when they do not match), schemas that
are not ones refused before any call, and providers held to vision and json_schema."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import (
    ChatMessage,
    ErrorCode,
    GenerateRequest,
    GenerateResult,
    ImagePart,
    ImageUrl,
    JsonSchemaSpec,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    TextPart,
)
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.errors import ProviderError
from providers.memory.base import MemoryStore
from providers.registry import parse_config
from providers.router import ModelRouter
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay
from tests.unit.test_generate_handler import MODEL, chunks_of
from workers.handlers.generate import GenerateHandler

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def person(schema: dict[str, Any] = PERSON) -> ResponseFormatJsonSchema:
    return ResponseFormatJsonSchema(json_schema=JsonSchemaSpec(name="person", schema=schema))


def handler_over(replay: Replay, memory: MemoryStore | None = None) -> GenerateHandler:
    config = parse_config("openai", {"api_key": API_KEY, "models": [MODEL]}, OpenAIChatConfig)
    chat = OpenAIChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())
    return GenerateHandler(ModelRouter("chat", [chat]), memory)


class ListMemory:
    """A memory store in a dict, to see what the handler saves."""

    name = "list"

    def __init__(self) -> None:
        self.turns: list[ChatMessage] = []

    async def history(self, tenant: str, session_id: str) -> list[ChatMessage]:
        return list(self.turns)

    async def append(
        self,
        tenant: str,
        session_id: str,
        messages: list[ChatMessage],
        *,
        turn_id: str | None = None,
    ) -> None:
        self.turns.extend(messages)

    async def clear(self, tenant: str, session_id: str) -> None:
        self.turns.clear()

    async def aclose(self) -> None:
        return None


def ask(**fields: Any) -> GenerateRequest:
    return GenerateRequest(
        request_id="r1",
        model=MODEL,
        messages=[ChatMessage(role="user", content="Who wrote the first program?")],
        session_id="s1",
        **fields,
    )


async def test_an_answer_of_the_schema_is_the_result_and_is_saved() -> None:
    replay = Replay().sse("openai/chat_stream_json_schema.sse")
    memory = ListMemory()
    handler = handler_over(replay, memory)
    chunks = await chunks_of(handler, ask(response_format=person()))
    final = chunks[-1]
    assert isinstance(final, GenerateResult)
    assert final.text == '{"name":"Ada Lovelace","age":36}'
    assert [t.role for t in memory.turns] == ["user", "assistant"]


async def test_an_answer_against_the_schema_fails_the_job_and_is_not_saved() -> None:
    replay = Replay().sse("openai/chat_stream.sse")  # "Hello! How can I help?"
    memory = ListMemory()
    handler = handler_over(replay, memory)
    with pytest.raises(ProviderError) as info:
        await chunks_of(handler, ask(response_format=ResponseFormatJsonObject()))
    assert info.value.code is ErrorCode.OUTPUT_INVALID
    assert not info.value.retryable
    assert "the answer is not JSON" in info.value.detail
    assert memory.turns == []


async def test_a_schema_that_is_not_one_is_refused_before_any_call() -> None:
    replay = Replay().sse("openai/chat_stream_json_schema.sse")
    with pytest.raises(ProviderError) as info:
        await chunks_of(handler_over(replay), ask(response_format=person({"type": 7})))
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "not a valid JSON Schema" in info.value.detail
    assert replay.requests == []


@pytest.mark.parametrize(
    ("fields", "lacking"),
    [
        ({"response_format": ResponseFormatJsonObject()}, "response_format json_object"),
        ({"response_format": person()}, "response_format json_schema"),
        (
            {
                "messages": [
                    ChatMessage(
                        role="user",
                        content=[
                            TextPart(text="What is this?"),
                            ImagePart(image_url=ImageUrl(url="https://example.com/a.png")),
                        ],
                    )
                ]
            },
            "images (image_url content parts)",
        ),
    ],
)
async def test_any_provider_is_held_to_vision_and_json_schema(
    fields: dict[str, Any], lacking: str
) -> None:
    chat = ScriptedChat()  # declares neither, and checks nothing itself
    handler = GenerateHandler(ModelRouter("chat", [chat]))
    job = GenerateRequest(
        request_id="r1",
        model="scripted-model",
        messages=fields.pop("messages", [ChatMessage(role="user", content="hi")]),
        **fields,
    )
    with pytest.raises(ProviderError) as info:
        await chunks_of(handler, job)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert f"it does not support {lacking}" in info.value.detail
    assert chat.calls == 0


async def test_text_parts_reach_a_provider_without_vision_and_are_saved_as_parts() -> None:
    chat = ScriptedChat(echo=True, pieces=())
    memory = ListMemory()
    handler = GenerateHandler(ModelRouter("chat", [chat]), memory)
    parts = [TextPart(text="Hello, "), TextPart(text="parts")]
    job = GenerateRequest(
        request_id="r1",
        model="scripted-model",
        messages=[ChatMessage(role="user", content=parts)],
        session_id="s1",
    )
    await chunks_of(handler, job)
    assert chat.calls == 1
    assert memory.turns[0].content == parts
