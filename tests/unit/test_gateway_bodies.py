"""The gateway's bodies and keys without a server: every field of the fleet's chat contract
is read from OpenAI's spelling, the stream's events parse as the official `openai` package's
own types, and a bearer key names its tenant."""

from __future__ import annotations

import msgspec
import pytest
from openai.types.chat import ChatCompletionChunk

from contracts.content import ImagePart
from contracts.errors import ConfigError
from contracts.generate import NamedToolChoice, ToolSpec
from contracts.replies import GenerateResult, TextDelta, ToolCallDelta
from contracts.response_format import ResponseFormatJsonSchema
from contracts.secrets import Secret
from contracts.usage import Usage
from gateway.chat_chunks import DONE, ChunkWriter
from gateway.chat_request import read_chat_call
from gateway.errors import OpenAIError
from gateway.keys import KeyRing

IMAGE = "data:image/png;base64,iVBORw0KGgo="


def test_every_chat_option_is_read_from_openais_spelling() -> None:
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}},
                ],
            }
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "look", "description": "d", "parameters": {"type": "object"}},
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "look"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}},
        },
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "user": "end-user-1",
        "max_completion_tokens": 32,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
    }
    call = read_chat_call(msgspec.json.encode(body))
    assert (call.model, call.stream, call.include_usage) == ("m", True, True)
    options = call.options
    assert options["tools"] == [
        ToolSpec(name="look", description="d", parameters={"type": "object"})
    ]
    assert options["tool_choice"] == NamedToolChoice(name="look")
    assert isinstance(options["response_format"], ResponseFormatJsonSchema)
    assert (options["seed"], options["presence_penalty"], options["frequency_penalty"]) == (
        7,
        0.5,
        -0.5,
    )
    assert (options["user"], options["max_tokens"], options["stop"]) == ("end-user-1", 32, ["END"])
    content = call.body.messages[0].content
    assert isinstance(content, list)
    assert isinstance(content[1], ImagePart)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{", None),
        (b'{"messages": []}', "model"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}', "n"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": "a"}', "top_p"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
            b'"stream_options": {"include_usage": true}}',
            "stream_options",
        ),
    ],
)
def test_a_refused_body_names_its_field(body: bytes, param: str | None) -> None:
    with pytest.raises(OpenAIError) as caught:
        read_chat_call(body)
    assert (caught.value.status, caught.value.param) == (400, param)


def test_streamed_events_are_openais_chunks() -> None:
    writer = ChunkWriter("chatcmpl-1", 1700000000, "m", include_usage=True)
    call = ToolCallDelta(request_id="r", seq=1, index=0, id="c1", name="look", arguments='{"a"')
    result = GenerateResult(
        request_id="r",
        seq=2,
        text="",
        model="m",
        finish_reason="tool_calls",
        usage=Usage(prompt_tokens=3, completion_tokens=2),
    )
    stream = b"".join(
        [
            writer.opening(),
            writer.delta(TextDelta(request_id="r", seq=0, text="Hi")),
            writer.delta(call),
            writer.closing(result),
        ]
    )
    assert stream.endswith(DONE)
    events = stream.removesuffix(DONE).split(b"\n\n")[:-1]
    chunks = [ChatCompletionChunk.model_validate_json(e.removeprefix(b"data: ")) for e in events]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].delta.content == "Hi"
    tool = chunks[2].choices[0].delta.tool_calls
    assert tool is not None
    assert tool[0].id == "c1"
    assert tool[0].function is not None
    assert (tool[0].function.name, tool[0].function.arguments) == ("look", '{"a"')
    assert chunks[3].choices[0].finish_reason == "tool_calls"
    assert chunks[4].choices == []
    assert chunks[4].usage is not None
    assert chunks[4].usage.total_tokens == 5
    assert all(c.usage is None for c in chunks[:4])


def test_a_bearer_key_names_its_tenant() -> None:
    keys = KeyRing({"acme": Secret("sk-a"), "billing": Secret("sk-b"), "idle": Secret("")})
    assert keys.tenant("Bearer sk-b") == "billing"
    assert keys.tenant("bearer  sk-a ") == "acme"
    for header in (None, "sk-a", "Basic sk-a", "Bearer sk-", "Bearer ", "Bearer sk-a2"):
        with pytest.raises(OpenAIError) as caught:
            keys.tenant(header)
        assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")
    with pytest.raises(ConfigError, match="same API key"):
        KeyRing({"acme": Secret("sk-a"), "billing": Secret("sk-a")})


def test_an_answers_message_sent_back_as_it_came_is_taken_while_its_extras_are_empty() -> None:
    """The tools loop of OpenAI's SDKs appends the answer's message whole: its `refusal`,
    `annotations`, `audio` and `function_call` are taken off when empty, refused when not."""
    turn: dict[str, object] = {"role": "assistant", "content": "Hi", "refusal": None}
    turn["annotations"] = []
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}, turn]}
    call = read_chat_call(msgspec.json.encode(body))
    assert call.body.messages[1].content == "Hi"
    body["messages"] = [{**turn, "refusal": "I cannot help with that"}]
    with pytest.raises(OpenAIError) as caught:
        read_chat_call(msgspec.json.encode(body))
    assert caught.value.param == "messages[0]"
    assert "unknown field `refusal`" in caught.value.message
