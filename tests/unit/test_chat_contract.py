"""The chat-completions parts of the generate contract: tools, tool choice, sampling fields,
tool-call chunks and usage in OpenAI's names (with the old names still filled in)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from contracts import (
    ChatMessage,
    ContentType,
    GenerateRequest,
    GenerateResult,
    NamedToolChoice,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
    decode_chunk,
    decode_request,
    encode,
)
from tests.unit.generate_payloads import generate_json, schema_refusal

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city":"Oslo"}')

TOOL_LOOP = GenerateRequest(
    request_id="r1",
    model="gpt-4o-mini",
    messages=[
        ChatMessage(role="user", content="Weather in Oslo?"),
        ChatMessage(role="assistant", content="", tool_calls=[CALL]),
        ChatMessage(role="tool", content='{"temp": 3}', tool_call_id="call_1"),
    ],
    tools=[WEATHER],
    tool_choice=NamedToolChoice(name="get_weather"),
    seed=42,
    presence_penalty=0.5,
    frequency_penalty=-0.5,
    user="user-7",
)


@pytest.mark.parametrize("content_type", [ContentType.MSGPACK, ContentType.JSON])
def test_a_tool_loop_request_round_trips(content_type: str) -> None:
    assert decode_request("generate", encode(TOOL_LOOP, content_type)) == TOOL_LOOP


@pytest.mark.parametrize("choice", ["auto", "none", "required", {"name": "get_weather"}])
def test_every_tool_choice_is_accepted_from_json(choice: object) -> None:
    tools = [{"name": "get_weather", "parameters": {"type": "object"}}]
    request = decode_request("generate", generate_json(tools=tools, tool_choice=choice))
    assert isinstance(request, GenerateRequest)
    expected = NamedToolChoice(name="get_weather") if isinstance(choice, dict) else choice
    assert request.tool_choice == expected


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"tool_choice": "auto"}, "`tool_choice` is set but `tools` is empty"),
        (
            {"tools": [{"name": "a"}], "tool_choice": {"name": "b"}},
            "`tool_choice` names 'b', which is not one of `tools`",
        ),
        ({"tools": [{"name": "a"}], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"name": "a"}, {"name": "a"}]}, "`tools` names a tool twice"),
        ({"tools": [{"name": "has space"}]}, "$.tools[0].name"),
        ({"seed": -1}, "seed"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"user": ""}, "user"),
    ],
)
def test_inconsistent_or_out_of_range_fields_are_refused(
    fields: dict[str, Any], reason: str
) -> None:
    assert reason in schema_refusal(generate_json(**fields))


def test_tool_turns_must_be_well_formed() -> None:
    orphan = [{"role": "tool", "content": "3 degrees"}]
    assert "needs `tool_call_id`" in schema_refusal(generate_json(messages=orphan))
    calls = [{"id": "c", "name": "f", "arguments": "{}"}]
    user_calls = [{"role": "user", "content": "", "tool_calls": calls}]
    assert "only an assistant message" in schema_refusal(generate_json(messages=user_calls))


@pytest.mark.parametrize("content_type", [ContentType.MSGPACK, ContentType.JSON])
def test_tool_call_chunks_round_trip(content_type: str) -> None:
    chunks = [
        ToolCallDelta(request_id="r1", seq=0, index=0, id="call_1", name="get_weather"),
        ToolCallDelta(request_id="r1", seq=1, index=0, arguments='{"city":'),
        GenerateResult(
            request_id="r1",
            seq=2,
            text="",
            model="m",
            finish_reason="tool_calls",
            tool_calls=[CALL],
            usage=Usage(prompt_tokens=9, completion_tokens=4, cached_tokens=8),
        ),
    ]
    for chunk in chunks:
        assert decode_chunk(encode(chunk, content_type), content_type) == chunk


def test_usage_speaks_openai_names_and_keeps_the_old_ones_filled() -> None:
    usage = Usage(prompt_tokens=12, completion_tokens=5, cached_tokens=10, reasoning_tokens=2)
    assert (usage.total_tokens, usage.input_tokens, usage.output_tokens) == (17, 12, 5)
    on_the_wire = json.loads(encode(usage, ContentType.JSON))
    assert on_the_wire == {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
        "cached_tokens": 10,
        "reasoning_tokens": 2,
        "estimated": False,
        "cost_usd": None,
        "input_tokens": 12,
        "output_tokens": 5,
    }


def test_a_reply_from_an_older_worker_reads_in_the_new_names() -> None:
    old = b'{"kind":"generate_result","request_id":"r","seq":0,"text":"hi","model":"m",'
    old += b'"usage":{"input_tokens":7,"output_tokens":3}}'
    chunk = decode_chunk(old, ContentType.JSON)
    assert isinstance(chunk, GenerateResult)
    assert (chunk.usage.prompt_tokens, chunk.usage.completion_tokens) == (7, 3)
    assert chunk.usage.total_tokens == 10
    assert chunk.usage.cached_tokens is None
    assert chunk.tool_calls is None


def test_a_total_the_provider_reports_is_kept() -> None:
    usage = msgspec.convert({"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 6}, Usage)
    assert usage.total_tokens == 6  # e.g. a provider that counts tokens it bills apart
