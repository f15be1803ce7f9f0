"""Structured output on the Messages API, which has no response_format: one tool whose input
schema is the answer's schema, and a tool_choice that forces the model to call it. The
call's streamed input is the answer (docs/decisions/0019-structured-output-and-content-parts.md)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import msgspec

from contracts.errors import ErrorCode
from contracts.response_format import JsonResponseFormat, ResponseFormatJsonSchema
from providers.chat.base import ChatDone, ChatEvent, TextPiece, ToolCallPiece
from providers.errors import ProviderError

_DESCRIPTION = "Give your answer by calling this tool: its input is the answer."
_JSON_OBJECT_TOOL = "json_answer"


class AnswerTool(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    definition: dict[str, Any]  # for the body's "tools"

    @property
    def choice(self) -> dict[str, str]:
        return {"type": "tool", "name": self.name}


def answer_tool(response_format: JsonResponseFormat, *, has_tools: bool, op: str) -> AnswerTool:
    """The forced tool for ``response_format``; invalid_input for what it cannot carry."""
    if has_tools:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            "the Messages API gives structured output through a tool it is made to call, "
            "so response_format cannot be combined with tools or tool_choice",
        )
    if isinstance(response_format, ResponseFormatJsonSchema):
        spec = response_format.json_schema
        name, description, schema = spec.name, spec.description, spec.schema
    else:
        name, description, schema = _JSON_OBJECT_TOOL, None, {}
    root_type = schema.get("type", "object")
    if root_type != "object":
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            "the Messages API gives structured output through a tool call, whose input is "
            f"an object: the schema's root must be an object, not {root_type!r}",
        )
    definition = {
        "name": name,
        "description": description or _DESCRIPTION,
        "input_schema": {**schema, "type": "object"},
    }
    return AnswerTool(name=name, definition=definition)


async def answer_events(
    events: AsyncGenerator[ChatEvent, None],
) -> AsyncGenerator[ChatEvent, None]:
    """A stream whose one tool call is the answer tool's, as the answer's text: the call's
    input pieces become text pieces, and its end a plain "stop" with no tool calls."""
    written = False
    async with aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, ToolCallPiece):
                if event.arguments:
                    written = True
                    yield TextPiece(event.arguments)
            elif isinstance(event, ChatDone):
                if not written:  # the tool was called with an empty input
                    yield TextPiece("{}")
                finish = "stop" if event.finish_reason == "tool_calls" else event.finish_reason
                yield ChatDone(finish_reason=finish, usage=event.usage)
            else:
                yield event
