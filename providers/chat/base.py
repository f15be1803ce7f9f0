"""What a chat provider is: a streaming async interface plus declared capabilities."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol, runtime_checkable

import msgspec

from contracts.generate import ChatMessage, ChatOptions, ToolCall
from contracts.names import Lane
from contracts.usage import Usage
from providers.catalogue import ModelEntry

# The optional fields of a call that a provider may or may not be able to honour; one it
# does not list in its capabilities is refused (providers/chat/support.py), never dropped.
ChatOption = Literal["seed", "presence_penalty", "frequency_penalty", "user"]


class ChatCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    models: tuple[str, ...]
    streaming: bool = True
    # Tools offered, tool choice, and conversations that hold tool calls or results.
    tools: bool = False
    # Image parts in the conversation (content parts of type image_url).
    vision: bool = False
    # response_format json_object and json_schema (constrained decoding or the API's own).
    json_schema: bool = False
    # Speaker names (ChatMessage.name) carried to the model; a provider whose API or
    # template has no place for one refuses a message that sets it, never drops it.
    names: bool = False
    max_context_tokens: int | None = None
    options: frozenset[ChatOption] = frozenset()
    # What the model catalogue says of each model (providers/catalogue.py): read through
    # for_model, never on its own.
    per_model: dict[str, ModelEntry] = {}

    def for_model(self, model: str) -> ChatCapabilities:
        """What the provider can do for ``model``: a model can do no more than its provider,
        and has the smaller of the two context windows."""
        entry = self.per_model.get(model)
        if entry is None:
            return self
        windows = [w for w in (self.max_context_tokens, entry.context_tokens) if w is not None]
        return msgspec.structs.replace(
            self,
            streaming=self.streaming and entry.streaming is not False,
            tools=self.tools and entry.tools is not False,
            vision=self.vision and entry.vision is not False,
            json_schema=self.json_schema and entry.json_schema is not False,
            max_context_tokens=min(windows) if windows else None,
            per_model={},
        )


class ChatParams(ChatOptions, frozen=True, kw_only=True):
    """One call: the model and the request's chat options, already validated by the
    contract."""

    model: str
    # The lane of the job the call serves: a provider that queues calls for one model
    # serves the interactive lane's first (providers/chat/local_llama.py). Never sent on.
    lane: Lane = "interactive"


class TextPiece(msgspec.Struct, frozen=True):
    text: str


class ToolCallPiece(msgspec.Struct, frozen=True, kw_only=True):
    """A fragment of tool call ``index`` (0, 1, ... in the order the model began them); the
    first fragment of a call has its id and name (providers/chat/tool_calls.py)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ChatDone(msgspec.Struct, frozen=True, kw_only=True):
    finish_reason: str
    usage: Usage
    # The calls the model asked for, assembled from the pieces streamed (finish "tool_calls").
    tool_calls: list[ToolCall] | None = None
    # Who answered, when not the provider and model asked (a fallback chain names its link).
    provider: str | None = None
    model: str | None = None


ChatEvent = TextPiece | ToolCallPiece | ChatDone


@runtime_checkable
class ChatProvider(Protocol):
    name: str

    @property
    def capabilities(self) -> ChatCapabilities: ...

    def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        """Yield text and tool-call pieces as they are produced, then exactly one ChatDone
        (with the tool calls whole). A call the provider cannot honour (tools without tool
        support, an option it lacks) fails with invalid_input before any request is made."""
        ...

    async def load(self) -> None:
        """Get ready to serve (load weights, open connections) before the first job."""
        ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
