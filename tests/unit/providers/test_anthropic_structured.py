"""The Anthropic provider's structured output (a tool the model is made to call, whose input
is the answer) and images (image blocks with a base64 or url source). The stream
(anthropic/messages_stream_answer_tool.sse) is written in the Messages API's streaming format
for a forced tool_choice, not recorded: there was no network to record one."""

from __future__ import annotations

import json

import pytest

from contracts import (
    ChatMessage,
    ErrorCode,
    ImagePart,
    ImageUrl,
    JsonSchemaSpec,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    TextPart,
    ToolSpec,
)
from providers.chat.base import ChatDone, ChatParams, TextPiece, ToolCallPiece
from providers.errors import ProviderError
from tests.unit.providers import Replay
from tests.unit.providers.test_anthropic_tools import MODEL, body_of, events_of

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
AS_PERSON = ResponseFormatJsonSchema(json_schema=JsonSchemaSpec(name="person", schema=PERSON))
ASK = [ChatMessage(role="user", content="Who wrote the first program?")]


async def test_the_forced_tools_input_streams_as_the_answers_text() -> None:
    replay = Replay().sse("anthropic/messages_stream_answer_tool.sse", chunk_size=17)
    events = await events_of(replay, ChatParams(model=MODEL, response_format=AS_PERSON), ASK)
    assert not any(isinstance(e, ToolCallPiece) for e in events)
    text = "".join(e.text for e in events if isinstance(e, TextPiece))
    assert json.loads(text) == {"name": "Ada Lovelace", "age": 36}
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.finish_reason == "stop"  # the API's tool_use: the answer is complete
    assert done.tool_calls is None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (412, 48)
    body = body_of(replay)
    assert body["tools"] == [
        {
            "name": "person",
            "description": "Give your answer by calling this tool: its input is the answer.",
            "input_schema": PERSON,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "person"}


async def test_json_object_is_a_tool_taking_any_object() -> None:
    replay = Replay().sse("anthropic/messages_stream_answer_tool.sse")
    params = ChatParams(model=MODEL, response_format=ResponseFormatJsonObject())
    await events_of(replay, params, ASK)
    body = body_of(replay)
    assert body["tools"][0]["input_schema"] == {"type": "object"}
    assert body["tool_choice"] == {"type": "tool", "name": "json_answer"}


@pytest.mark.parametrize(
    ("params", "says"),
    [
        (
            ChatParams(model=MODEL, response_format=AS_PERSON, tools=[ToolSpec(name="get_time")]),
            "cannot be combined with tools",
        ),
        (
            ChatParams(
                model=MODEL,
                response_format=ResponseFormatJsonSchema(
                    json_schema=JsonSchemaSpec(name="names", schema={"type": "array"})
                ),
            ),
            "the schema's root must be an object, not 'array'",
        ),
    ],
)
async def test_what_a_forced_tool_cannot_carry_is_refused_before_any_request(
    params: ChatParams, says: str
) -> None:
    replay = Replay().sse("anthropic/messages_stream_answer_tool.sse")
    with pytest.raises(ProviderError) as info:
        await events_of(replay, params, ASK)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert says in info.value.detail
    assert replay.requests == []


async def test_images_go_as_image_blocks_with_base64_or_url_sources() -> None:
    replay = Replay().sse("anthropic/messages_stream.sse")
    look = [
        ChatMessage(role="system", content=[TextPart(text="Be brief.")]),
        ChatMessage(
            role="user",
            content=[
                ImagePart(image_url=ImageUrl(url="data:image/png;base64,iVBORw0KGgo=")),
                ImagePart(image_url=ImageUrl(url="https://example.com/a.jpg", detail="auto")),
                TextPart(text="What differs?"),
            ],
        ),
    ]
    await events_of(replay, ChatParams(model=MODEL), look)
    body = body_of(replay)
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                {"type": "text", "text": "What differs?"},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("image", "says"),
    [
        (ImageUrl(url="https://example.com/a.jpg", detail="low"), "no image detail setting"),
        (ImageUrl(url="data:image/tiff;base64,SUkqAA=="), "not 'image/tiff'"),
    ],
)
async def test_an_image_the_api_cannot_take_as_asked_is_refused(image: ImageUrl, says: str) -> None:
    replay = Replay().sse("anthropic/messages_stream.sse")
    look = [ChatMessage(role="user", content=[ImagePart(image_url=image)])]
    with pytest.raises(ProviderError) as info:
        await events_of(replay, ChatParams(model=MODEL), look)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert says in info.value.detail
    assert replay.requests == []


async def test_tool_results_with_text_parts_go_as_text_blocks() -> None:
    replay = Replay().sse("anthropic/messages_stream.sse")
    loop = [
        ChatMessage(role="user", content="Time?"),
        ChatMessage(role="tool", content=[TextPart(text="12:00")], tool_call_id="toolu_1"),
    ]
    await events_of(replay, ChatParams(model=MODEL), loop)
    result = body_of(replay)["messages"][1]["content"][0]
    assert result["content"] == [{"type": "text", "text": "12:00"}]
