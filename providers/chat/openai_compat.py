"""Chat over the OpenAI Chat Completions API, streamed; with base_url it also serves vLLM,
Ollama, LM Studio, TGI and most hosted gateways."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Literal

import httpx
import msgspec

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, ToolCall
from contracts.usage import Usage
from providers.chat.base import ChatDone, ChatEvent, ChatParams, TextPiece
from providers.chat.http_chat import ChatHttpConfig, HttpChat
from providers.errors import ProviderError
from providers.http_api import (
    decode_with,
    error_from_body,
    error_from_exception,
    iter_sse,
    raise_for_status,
)
from providers.registry import parse_config
from providers.shared import Shared


class OpenAIChatConfig(ChatHttpConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "openai"  # set it to run several instances (e.g. "vllm") side by side
    base_url: str = "https://api.openai.com/v1"
    # OpenAI's reasoning models refuse max_tokens; many compatible servers only know it.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # Servers that reject stream_options (some older gateways) can turn it off; usage is
    # then reported as zero.
    stream_usage: bool = True
    # false: ask for the whole answer in one response (servers that cannot stream); a
    # server that answers a streamed call with one JSON body is understood either way.
    stream: bool = True


# The streamed chunk, as much of it as we read. Every field is optional because compatible
# servers differ (vLLM ends with "choices": null; OpenAI sends "usage": null until the end).
class _FunctionDelta(msgspec.Struct, frozen=True):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct, frozen=True):
    index: int = 0
    id: str | None = None
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct, frozen=True):
    content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct, frozen=True):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Chunk(msgspec.Struct, frozen=True):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: dict[str, Any] | str | None = None


class _FunctionCall(msgspec.Struct, frozen=True):
    name: str = ""
    arguments: str = ""


class _ToolCall(msgspec.Struct, frozen=True):
    id: str = ""
    function: _FunctionCall = _FunctionCall()


class _Message(msgspec.Struct, frozen=True):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _CompletionChoice(msgspec.Struct, frozen=True):
    index: int = 0
    message: _Message = _Message()
    finish_reason: str | None = None


class _Completion(msgspec.Struct, frozen=True):
    """A whole (not streamed) answer."""

    choices: list[_CompletionChoice] | None = None
    usage: _Usage | None = None
    error: dict[str, Any] | str | None = None


_CHUNK = msgspec.json.Decoder(_Chunk)
_COMPLETION = msgspec.json.Decoder(_Completion)
_DONE = "[DONE]"


class _ToolCallParts:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []

    def add(self, delta: _ToolCallDelta) -> None:
        # The id and name come in the first piece; some servers repeat them on every one.
        if delta.id and not self.id:
            self.id = delta.id
        if delta.function is not None:
            if delta.function.name and not self.name:
                self.name = delta.function.name
            if delta.function.arguments:
                self.arguments.append(delta.function.arguments)

    def build(self) -> ToolCall:
        return ToolCall(id=self.id, name=self.name, arguments="".join(self.arguments) or "{}")


def _message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_calls:
        out["content"] = message.content or None  # an assistant turn that only calls tools
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


class OpenAIChat(HttpChat[OpenAIChatConfig]):
    """One OpenAI-compatible endpoint; retries and a circuit breaker wrap every call."""

    def _body(self, messages: list[ChatMessage], params: ChatParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": params.model,
            "messages": [_message(m) for m in messages],
            "stream": self._config.stream,
        }
        if self._config.stream and self._config.stream_usage:
            body["stream_options"] = {"include_usage": True}
        if params.max_tokens is not None:
            body[self._config.max_tokens_field] = params.max_tokens
        if params.temperature is not None:
            body["temperature"] = params.temperature
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = params.stop
        if params.tools and self._config.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters or {"type": "object", "properties": {}},
                    },
                }
                for tool in params.tools
            ]
        return body

    async def _attempt(self, body: bytes) -> AsyncGenerator[ChatEvent, None]:
        headers = {**self._headers(), "content-type": "application/json"}
        with self._breaker.guard():
            try:
                async with self._http.client.stream(
                    "POST", f"{self._base}/chat/completions", content=body, headers=headers
                ) as response:
                    await raise_for_status(response, op=self._op, redact=self._redact)
                    content_type = response.headers.get("content-type", "")
                    if content_type.startswith("text/event-stream"):
                        async for event in self._events(response):
                            yield event
                    else:  # one JSON body: asked for (stream = false), or a server's choice
                        for event in self._whole(await response.aread()):
                            yield event
            except httpx.HTTPError as exc:
                raise error_from_exception(exc, op=self._op, redact=self._redact) from exc

    async def _events(self, response: httpx.Response) -> AsyncIterator[ChatEvent]:
        finish_reason: str | None = None
        usage = Usage()
        calls: dict[int, _ToolCallParts] = {}
        done = False
        async for sse in iter_sse(response.aiter_lines()):
            if sse.data.strip() == _DONE:
                done = True
                break
            chunk = decode_with(
                _CHUNK, sse.data, what="stream chunk", op=self._op, redact=self._redact
            )
            if chunk.error is not None:
                raise error_from_body(
                    None, {"error": chunk.error}, op=self._op, redact=self._redact
                )
            if chunk.usage is not None:
                usage = Usage(
                    input_tokens=chunk.usage.prompt_tokens,
                    output_tokens=chunk.usage.completion_tokens,
                )
            for choice in chunk.choices or ():
                if choice.index != 0:
                    continue  # we never ask for n > 1
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
                delta = choice.delta
                if delta is None:
                    continue
                for piece in delta.tool_calls or ():
                    calls.setdefault(piece.index, _ToolCallParts()).add(piece)
                if delta.content:
                    yield TextPiece(delta.content)
        if not done and finish_reason is None:
            raise ProviderError(
                ErrorCode.PROVIDER_DOWN, self._op, "the stream ended before the answer was complete"
            )
        tool_calls = [calls[i].build() for i in sorted(calls)] or None
        yield ChatDone(finish_reason=finish_reason or "stop", usage=usage, tool_calls=tool_calls)

    def _whole(self, body: bytes) -> list[ChatEvent]:
        """The events of an answer that came as one JSON body."""
        completion = decode_with(
            _COMPLETION, body, what="response body", op=self._op, redact=self._redact
        )
        if completion.error is not None:
            raise error_from_body(
                None, {"error": completion.error}, op=self._op, redact=self._redact
            )
        choice = next((c for c in completion.choices or () if c.index == 0), None)
        if choice is None:
            raise ProviderError(
                ErrorCode.UNEXPECTED_RESPONSE, self._op, "the response body holds no choice"
            )
        usage = completion.usage or _Usage()
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
            for c in choice.message.tool_calls or ()
        ]
        events: list[ChatEvent] = []
        if choice.message.content:
            events.append(TextPiece(choice.message.content))
        events.append(
            ChatDone(
                finish_reason=choice.finish_reason or "stop",
                usage=Usage(
                    input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens
                ),
                tool_calls=calls or None,
            )
        )
        return events


def create(config: Mapping[str, Any], shared: Shared) -> OpenAIChat:
    parsed = parse_config(str(config.get("name", "openai")), config, OpenAIChatConfig)
    return OpenAIChat(parsed)
