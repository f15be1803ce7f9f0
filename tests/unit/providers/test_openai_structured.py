"""The OpenAI-compatible chat provider's response_format and content parts: passed through in
the API's own shape, and refused where the operator says the server lacks them. The stream
(openai/chat_stream_json_schema.sse) is written in the Chat Completions streaming format, not
recorded: there was no network to record one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts import (
    ChatMessage,
    ErrorCode,
    ImagePart,
    ImageUrl,
    JsonSchemaSpec,
    ResponseFormat,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    ResponseFormatText,
    TextPart,
)
from providers.chat.base import ChatDone, ChatParams, ChatProvider, TextPiece
from providers.errors import ProviderError
from tests.conformance.chat import ChatProviderConformance, Counter
from tests.unit.providers import Replay
from tests.unit.providers.test_openai_chat import make
from tests.unit.providers.test_openai_tools import MODEL, body_of, events_of

PNG = (  # one transparent pixel
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4"
    "DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
NARROWED: dict[str, Any] = {"vision": False, "json_schema": False, "tools": False, "options": []}
LOOK = [
    ChatMessage(role="system", content=[TextPart(text="You describe people.")]),
    ChatMessage(
        role="user",
        content=[
            TextPart(text="Who is this?"),
            ImagePart(image_url=ImageUrl(url=PNG, detail="low")),
            ImagePart(image_url=ImageUrl(url="https://example.com/ada.jpg")),
        ],
    ),
]


async def test_a_json_schema_answer_streams_as_text_with_the_format_passed_through() -> None:
    replay = Replay().sse("openai/chat_stream_json_schema.sse", chunk_size=19)
    response_format = ResponseFormatJsonSchema(
        json_schema=JsonSchemaSpec(
            name="person", description="Who it is", schema=PERSON, strict=True
        )
    )
    events = await events_of(replay, ChatParams(model=MODEL, response_format=response_format))
    text = "".join(e.text for e in events if isinstance(e, TextPiece))
    assert json.loads(text) == {"name": "Ada Lovelace", "age": 36}
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert (done.finish_reason, done.usage.completion_tokens) == ("stop", 11)
    assert body_of(replay)["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "person",
            "description": "Who it is",
            "schema": PERSON,
            "strict": True,
        },
    }


@pytest.mark.parametrize(
    ("response_format", "wire"),
    [
        (ResponseFormatJsonObject(), {"type": "json_object"}),
        (ResponseFormatText(), {"type": "text"}),
        (
            ResponseFormatJsonSchema(json_schema=JsonSchemaSpec(name="anything")),
            {"type": "json_schema", "json_schema": {"name": "anything"}},
        ),
    ],
)
async def test_every_format_goes_in_the_apis_words(
    response_format: ResponseFormat, wire: dict[str, Any]
) -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    await events_of(replay, ChatParams(model=MODEL, response_format=response_format))
    assert body_of(replay)["response_format"] == wire


async def test_content_parts_go_as_the_apis_content_parts() -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    await events_of(replay, ChatParams(model=MODEL), LOOK)
    system, user = body_of(replay)["messages"]
    assert system == {
        "role": "system",
        "content": [{"type": "text", "text": "You describe people."}],
    }
    assert user["content"] == [
        {"type": "text", "text": "Who is this?"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/ada.jpg"}},
    ]


@pytest.mark.parametrize(
    ("overrides", "params", "messages", "lacking"),
    [
        ({"vision": False}, ChatParams(model=MODEL), LOOK, "images (image_url content parts)"),
        (
            {"json_schema": False},
            ChatParams(model=MODEL, response_format=ResponseFormatJsonObject()),
            [ChatMessage(role="user", content="hi")],
            "response_format json_object",
        ),
    ],
)
async def test_what_the_server_lacks_is_refused_before_any_request(
    overrides: dict[str, Any],
    params: ChatParams,
    messages: list[ChatMessage],
    lacking: str,
) -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    with pytest.raises(ProviderError) as info:
        await events_of(replay, params, messages, **overrides)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert f"it does not support {lacking}" in info.value.detail
    assert replay.requests == []


async def test_text_parts_alone_reach_a_server_without_vision() -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    texts = [ChatMessage(role="user", content=[TextPart(text="Hello"), TextPart(text="!")])]
    await events_of(replay, ChatParams(model=MODEL), texts, vision=False)
    assert body_of(replay)["messages"][0]["content"] == [
        {"type": "text", "text": "Hello"},
        {"type": "text", "text": "!"},
    ]


class TestChatConformanceOfANarrowedServer(ChatProviderConformance):
    """A server the operator says has no vision, structured output, tools or options: the
    conformance suite's refusals run for each."""

    model = MODEL
    registry_name = "openai"

    @pytest.fixture
    def replay(self) -> Replay:
        return Replay().sse("openai/chat_stream.sse")

    @pytest.fixture
    async def provider(self, replay: Replay) -> AsyncIterator[ChatProvider]:
        provider = make(replay, **NARROWED)
        yield provider
        await provider.aclose()

    @pytest.fixture
    def calls_made(self, replay: Replay) -> Counter:
        return lambda: len(replay.requests)

    @pytest.fixture
    def open_calls(self, replay: Replay) -> Counter:
        return replay.open_responses

    @pytest.fixture
    async def failing_provider(self) -> AsyncIterator[ChatProvider]:
        provider = make(Replay().json(401, "openai/error_401_invalid_api_key.json"), **NARROWED)
        yield provider
        await provider.aclose()
