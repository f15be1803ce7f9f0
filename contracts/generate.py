"""Generate (chat completion) requests."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from contracts.envelope import Identifier, Name, Request

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    content: str
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)  # JSON Schema


class GenerateRequest(Request, frozen=True, kw_only=True, tag="generate"):
    model: Name
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    # A provider name from the chat registry; None lets the worker route by model.
    provider: Name | None = None
    # With a session id the worker prepends the stored history and saves the new turns.
    session_id: Identifier | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] | None = None
    stop: list[str] | None = None
    tools: list[ToolSpec] | None = None
    # False: no deltas, only the final reply (callers that want the whole answer at once).
    stream: bool = True
