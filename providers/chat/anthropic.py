"""Chat over the Anthropic Messages API, streamed (server-sent events), with tool use,
images (providers/chat/anthropic_content.py) and structured output through a forced tool
(providers/chat/anthropic_answer_tool.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Annotated, Any, Final

import httpx
import msgspec

from contracts.content import text_of
from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, NamedToolChoice, ToolCall, ToolChoice
from contracts.response_format import json_format
from contracts.usage import Usage
from providers.chat.anthropic_answer_tool import answer_events, answer_tool
from providers.chat.anthropic_content import content_blocks
from providers.chat.base import (
    ChatDone,
    ChatEvent,
    ChatOption,
    ChatParams,
    TextPiece,
    ToolCallPiece,
)
from providers.chat.http_chat import ChatHttpConfig, HttpChat
from providers.chat.tool_calls import ToolCallAssembler
from providers.errors import ProviderError
from providers.http_api import (
    auth_headers,
    decode_with,
    error_from_body,
    error_from_exception,
    iter_sse,
    raise_for_status,
)
from providers.registry import parse_config
from providers.shared import Shared

_MAX_TEMPERATURE: Final = 1.0  # Anthropic's; OpenAI's is 2


class AnthropicChatConfig(ChatHttpConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "anthropic"
    base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    # The Messages API requires max_tokens; this is used when a request sets none.
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 1024


# Finish reasons in the words the rest of the fleet (and the OpenAI dialect) uses.
_FINISH: Final[Mapping[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# tool_choice in the API's words ("required" is its "any").
_TOOL_CHOICE: Final[Mapping[str, dict[str, str]]] = {
    "auto": {"type": "auto"},
    "none": {"type": "none"},
    "required": {"type": "any"},
}
# The Messages API has no seed and no presence or frequency penalty: a call that sets one is
# refused (providers/chat/support.py). The end user goes in metadata.user_id.
_OPTIONS: Final[frozenset[ChatOption]] = frozenset({"user"})


# One struct for every event type, all fields optional: the API adds event and delta
# types over time and asks clients to ignore the ones they do not know.
class _Block(msgspec.Struct, frozen=True):
    type: str = ""
    id: str | None = None
    name: str | None = None
    text: str | None = None


class _Delta(msgspec.Struct, frozen=True):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _Usage(msgspec.Struct, frozen=True):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def total_input(self) -> int | None:
        if self.input_tokens is None:
            return None
        # Cached prompt tokens are reported apart; the job still consumed them.
        cached = (self.cache_creation_input_tokens or 0) + (self.cache_read_input_tokens or 0)
        return self.input_tokens + cached


class _Message(msgspec.Struct, frozen=True):
    usage: _Usage | None = None


class _Event(msgspec.Struct, frozen=True):
    type: str
    index: int = 0
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: dict[str, Any] | None = None


_EVENT = msgspec.json.Decoder(_Event)


class _StreamState:
    """What a stream has told us so far, beyond the text already yielded."""

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_tokens: int | None = None
        self.stop_reason: str | None = None
        self.calls = ToolCallAssembler()
        # Content block index -> tool call index (text blocks take block indexes too).
        self.tool_blocks: dict[int, int] = {}
        self.stopped = False

    def tool_started(self, block_index: int, block: _Block) -> ToolCallPiece:
        index = self.tool_blocks.setdefault(block_index, len(self.tool_blocks))
        return self.calls.add(ToolCallPiece(index=index, id=block.id, name=block.name))

    def tool_arguments(self, block_index: int, partial_json: str) -> ToolCallPiece | None:
        index = self.tool_blocks.get(block_index)
        if index is None:
            return None
        return self.calls.add(ToolCallPiece(index=index, arguments=partial_json))

    def usage(self, usage: _Usage | None) -> None:
        if usage is None:
            return
        total_input = usage.total_input()
        if total_input is not None:
            self.input_tokens = total_input
        if usage.output_tokens is not None:
            self.output_tokens = usage.output_tokens  # cumulative, so the last one wins
        if usage.cache_read_input_tokens is not None:
            self.cached_tokens = usage.cache_read_input_tokens

    def done(self) -> ChatDone:
        reason = self.stop_reason or "stop"
        usage = Usage(
            prompt_tokens=self.input_tokens,
            completion_tokens=self.output_tokens,
            cached_tokens=self.cached_tokens,
        )
        return ChatDone(
            finish_reason=_FINISH.get(reason, reason), usage=usage, tool_calls=self.calls.calls()
        )


class AnthropicChat(HttpChat[AnthropicChatConfig]):
    """The Messages API; retries and a circuit breaker wrap every call."""

    health_path = "/v1/models"
    # A message of the Messages API is a role and content, with no place for a speaker's
    # name: a message that names one is refused (invalid_input), not sent without it.
    carries_names = False

    def _options(self) -> frozenset[ChatOption]:
        return _OPTIONS

    def _headers(self) -> dict[str, str]:
        return {
            **self._config.headers,
            "anthropic-version": self._config.anthropic_version,
            **auth_headers(self._config.api_key, header="x-api-key", bearer=False),
        }

    def _body(self, messages: list[ChatMessage], params: ChatParams) -> dict[str, Any]:
        system = "\n\n".join(text_of(m.content) for m in messages if m.role == "system")
        body: dict[str, Any] = {
            "model": params.model,
            "max_tokens": params.max_tokens or self._config.default_max_tokens,
            "messages": self._turns(messages),
            "stream": True,
        }
        if system:
            body["system"] = system
        if params.temperature is not None:
            if params.temperature > _MAX_TEMPERATURE:
                # The contract allows OpenAI's 0..2: capping it would answer another request.
                raise ProviderError(
                    ErrorCode.INVALID_INPUT,
                    self._op,
                    f"temperature {params.temperature:g} is outside Anthropic's range "
                    f"0..{_MAX_TEMPERATURE:g}",
                )
            body["temperature"] = params.temperature
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop_sequences"] = params.stop
        if params.user is not None:
            body["metadata"] = {"user_id": params.user}
        if params.tool_choice is not None:
            body["tool_choice"] = self._tool_choice(params.tool_choice)
        if params.tools:
            body["tools"] = [
                {
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters or {"type": "object", "properties": {}},
                }
                for tool in params.tools
            ]
        wanted = json_format(params.response_format)
        if wanted is not None:
            has_tools = bool(params.tools) or params.tool_choice is not None
            answer = answer_tool(wanted, has_tools=has_tools, op=self._op)
            body["tools"] = [answer.definition]
            body["tool_choice"] = answer.choice
        return body

    async def _stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ChatEvent, None]:
        events = super()._stream_chat(messages, params)
        if json_format(params.response_format) is not None:
            events = answer_events(events)  # the forced tool's input is the answer's text
        async with aclosing(events) as stream:
            async for event in stream:
                yield event

    def _tool_choice(self, choice: ToolChoice) -> dict[str, str]:
        if isinstance(choice, NamedToolChoice):
            return {"type": "tool", "name": choice.name}
        return dict(_TOOL_CHOICE[choice])

    def _turns(self, messages: list[ChatMessage]) -> list[dict[str, Any]]:
        """The conversation without system messages; the results of parallel tool calls
        (consecutive tool messages) go back together, as one user turn."""
        turns: list[dict[str, Any]] = []
        previous: ChatMessage | None = None
        for message in messages:
            if message.role == "system":
                continue
            turn = self._message(message)
            if message.role == "tool" and previous is not None and previous.role == "tool":
                turns[-1]["content"].extend(turn["content"])
            else:
                turns.append(turn)
            previous = message
        return turns

    def _message(self, message: ChatMessage) -> dict[str, Any]:
        if message.role == "tool":
            # Tool results go back as a user turn holding a tool_result block.
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": content_blocks(message.content, op=self._op),
            }
            return {"role": "user", "content": [block]}
        if message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = []
            if text := text_of(message.content):
                blocks.append({"type": "text", "text": text})
            for call in message.tool_calls:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": self._args(call),
                    }
                )
            return {"role": "assistant", "content": blocks}
        return {"role": message.role, "content": content_blocks(message.content, op=self._op)}

    def _args(self, call: ToolCall) -> Any:
        try:
            return msgspec.json.decode(call.arguments or "{}")
        except msgspec.DecodeError as exc:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                self._op,
                f"tool call {call.id!r} has arguments that are not JSON: {exc}",
            ) from exc

    async def _attempt(self, body: bytes) -> AsyncGenerator[ChatEvent, None]:
        headers = {**self._headers(), "content-type": "application/json"}
        with self._breaker.guard():
            try:
                async with self._http.client.stream(
                    "POST", f"{self._base}/v1/messages", content=body, headers=headers
                ) as response:
                    await raise_for_status(response, op=self._op, redact=self._redact)
                    async for event in self._events(response):
                        yield event
            except httpx.HTTPError as exc:
                raise error_from_exception(exc, op=self._op, redact=self._redact) from exc

    async def _events(self, response: httpx.Response) -> AsyncIterator[ChatEvent]:
        state = _StreamState()
        async for sse in iter_sse(response.aiter_lines()):
            event = self._decode(sse.data)
            if event.type == "error":
                # e.g. overloaded_error after the 200: the status is long gone, the type
                # says what happened.
                raise error_from_body(
                    None, {"error": event.error}, op=self._op, redact=self._redact
                )
            if event.type == "message_start" and event.message is not None:
                state.usage(event.message.usage)
            elif event.type == "content_block_start" and event.content_block is not None:
                block = event.content_block
                if block.type == "tool_use":
                    yield state.tool_started(event.index, block)
                elif block.type == "text" and block.text:
                    yield TextPiece(block.text)
            elif event.type == "content_block_delta" and event.delta is not None:
                delta = event.delta
                if delta.type == "text_delta" and delta.text:
                    yield TextPiece(delta.text)
                elif delta.type == "input_json_delta" and delta.partial_json:
                    piece = state.tool_arguments(event.index, delta.partial_json)
                    if piece is not None:
                        yield piece
            elif event.type == "message_delta":
                if event.delta is not None and event.delta.stop_reason:
                    state.stop_reason = event.delta.stop_reason
                state.usage(event.usage)
            elif event.type == "message_stop":
                state.stopped = True
                break
        if not state.stopped:
            raise ProviderError(
                ErrorCode.PROVIDER_DOWN, self._op, "the stream ended before message_stop"
            )
        yield state.done()

    def _decode(self, data: str) -> _Event:
        return decode_with(_EVENT, data, what="stream event", op=self._op, redact=self._redact)


def create(config: Mapping[str, Any], shared: Shared) -> AnthropicChat:
    parsed = parse_config(str(config.get("name", "anthropic")), config, AnthropicChatConfig)
    return AnthropicChat(parsed)
