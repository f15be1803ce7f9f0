"""What a chat provider is: a streaming async interface plus declared capabilities."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import msgspec

from contracts.generate import ChatMessage, ToolCall, ToolSpec
from contracts.usage import Usage


class ChatCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    models: tuple[str, ...]
    streaming: bool = True
    tools: bool = False
    max_context_tokens: int | None = None


class ChatParams(msgspec.Struct, frozen=True, kw_only=True):
    """Sampling settings for one call, already validated by the contract."""

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    # Offered to the model; providers whose capabilities say tools=False ignore them.
    tools: list[ToolSpec] | None = None


class TextPiece(msgspec.Struct, frozen=True):
    text: str


class ChatDone(msgspec.Struct, frozen=True, kw_only=True):
    finish_reason: str
    usage: Usage
    # The calls the model asked for, assembled from the pieces streamed (finish "tool_calls").
    tool_calls: list[ToolCall] | None = None


ChatEvent = TextPiece | ChatDone


@runtime_checkable
class ChatProvider(Protocol):
    name: str

    @property
    def capabilities(self) -> ChatCapabilities: ...

    def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        """Yield text pieces as they are produced, then exactly one ChatDone."""
        ...

    async def load(self) -> None:
        """Get ready to serve (load weights, open connections) before the first job."""
        ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
