"""Chat over the OpenAI Chat Completions API, streamed; with base_url it also serves vLLM,
Ollama, LM Studio, TGI and most hosted gateways."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Literal

import httpx
import msgspec

from contracts.content import Content, ImagePart
from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, NamedToolChoice, ToolChoice, ToolSpec
from contracts.response_format import ResponseFormat, ResponseFormatJsonSchema, type_name
from contracts.usage import Usage
from providers.chat.base import (
    ChatDone,
    ChatEvent,
    ChatOption,
    ChatParams,
    TextPiece,
    ToolCallPiece,
)
from providers.chat.http_chat import ChatHttpConfig, HttpChat
from providers.chat.support import OPTIONS, options_set
from providers.chat.tool_calls import ToolCallAssembler
from providers.errors import ProviderError
from providers.http_api import (
    decode_with,
    error_from_body,
    error_from_event,
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
    # Servers that reject stream_options (some older gateways) can turn it off; the worker
    # then counts usage itself and marks it estimated (as for servers that ignore it).
    stream_usage: bool = True
    # false: ask for the whole answer in one response (servers that cannot stream); a
    # server that answers a streamed call with one JSON body is understood either way.
    stream: bool = True
    # The optional fields the server takes (all by default; vLLM and Ollama take them too).
    # One left out here is refused with invalid_input instead of being sent.
    options: frozenset[ChatOption] = frozenset(OPTIONS)


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


class _PromptDetails(msgspec.Struct, frozen=True):
    cached_tokens: int | None = None


class _CompletionDetails(msgspec.Struct, frozen=True):
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None

    def usage(self) -> Usage:
        prompt, completion = self.prompt_tokens_details, self.completion_tokens_details
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.total_tokens,
            cached_tokens=prompt.cached_tokens if prompt else None,
            reasoning_tokens=completion.reasoning_tokens if completion else None,
        )


class _Chunk(msgspec.Struct, frozen=True):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: dict[str, Any] | str | None = None


class _FunctionCall(msgspec.Struct, frozen=True):
    name: str = ""
    arguments: str = ""


class _ToolCall(msgspec.Struct, frozen=True):
    id: str | None = None
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


def _piece(delta: _ToolCallDelta) -> ToolCallPiece:
    function = delta.function or _FunctionDelta()
    return ToolCallPiece(
        index=delta.index, id=delta.id, name=function.name, arguments=function.arguments or ""
    )


def _tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters or {"type": "object", "properties": {}},
        },
    }


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if isinstance(choice, NamedToolChoice):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


def _content(content: Content) -> str | list[dict[str, Any]]:
    """A string as it is; parts as the API's content parts (the contract's are its own)."""
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, ImagePart):
            image: dict[str, Any] = {"url": part.image_url.url}
            if part.image_url.detail is not None:
                image["detail"] = part.image_url.detail
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({"type": "text", "text": part.text})
    return parts


def _response_format(response_format: ResponseFormat) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_name(response_format)}
    if isinstance(response_format, ResponseFormatJsonSchema):
        spec = response_format.json_schema
        schema: dict[str, Any] = {"name": spec.name}
        if spec.description is not None:
            schema["description"] = spec.description
        if spec.schema:
            schema["schema"] = spec.schema
        if spec.strict is not None:
            schema["strict"] = spec.strict
        out["json_schema"] = schema
    return out


def _message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": _content(message.content)}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_calls:
        out["content"] = out["content"] or None  # an assistant turn that only calls tools
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

    carries_names = True  # each message's own "name" field

    def _options(self) -> frozenset[ChatOption]:
        return self._config.options

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
        if params.tools:
            body["tools"] = [_tool(tool) for tool in params.tools]
        if params.tool_choice is not None:
            body["tool_choice"] = _tool_choice(params.tool_choice)
        if params.response_format is not None:
            body["response_format"] = _response_format(params.response_format)
        for option in options_set(params):  # the API's names are the contract's
            body[option] = getattr(params, option)
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
        calls = ToolCallAssembler()
        done = False
        async for sse in iter_sse(response.aiter_lines()):
            if sse.data.strip() == _DONE:
                done = True
                break
            if sse.event == "error":  # an `error:` line (llama.cpp server before 2025)
                raise error_from_event(sse.data, op=self._op, redact=self._redact)
            chunk = decode_with(
                _CHUNK, sse.data, what="stream chunk", op=self._op, redact=self._redact
            )
            if chunk.error is not None:
                raise error_from_body(
                    None, {"error": chunk.error}, op=self._op, redact=self._redact
                )
            if chunk.usage is not None:
                usage = chunk.usage.usage()
            for choice in chunk.choices or ():
                if choice.index != 0:
                    continue  # we never ask for n > 1
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
                delta = choice.delta
                if delta is None:
                    continue
                for piece in delta.tool_calls or ():
                    yield calls.add(_piece(piece))
                if delta.content:
                    yield TextPiece(delta.content)
        if not done and finish_reason is None:
            raise ProviderError(
                ErrorCode.PROVIDER_DOWN, self._op, "the stream ended before the answer was complete"
            )
        yield ChatDone(finish_reason=finish_reason or "stop", usage=usage, tool_calls=calls.calls())

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
        calls = ToolCallAssembler()
        events: list[ChatEvent] = []
        if choice.message.content:
            events.append(TextPiece(choice.message.content))
        for index, call in enumerate(choice.message.tool_calls or ()):
            piece = ToolCallPiece(
                index=index, id=call.id, name=call.function.name, arguments=call.function.arguments
            )
            events.append(calls.add(piece))
        events.append(
            ChatDone(
                finish_reason=choice.finish_reason or "stop",
                usage=usage.usage(),
                tool_calls=calls.calls(),
            )
        )
        return events


def create(config: Mapping[str, Any], shared: Shared) -> OpenAIChat:
    parsed = parse_config(str(config.get("name", "openai")), config, OpenAIChatConfig)
    return OpenAIChat(parsed)
