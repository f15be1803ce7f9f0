"""What the HTTP chat providers share: config fields, capabilities, and a streamed call
with retries; each provider says how to build its body and read its stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated, Any, TypeVar

import msgspec

from contracts.generate import ChatMessage
from providers.call_retry import stream_with_retry
from providers.chat.base import ChatCapabilities, ChatEvent, ChatOption, ChatParams
from providers.chat.guarded import GuardedChat
from providers.http_api.client import HttpConfig
from providers.http_api.provider import HttpApiProvider


class ChatHttpConfig(HttpConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # false for a server or model without tool calling: requests with tools are refused.
    tools: bool = True
    # false for a model that cannot see: requests with image parts are refused.
    vision: bool = True
    # false for a server without structured output: json_object and json_schema are refused.
    json_schema: bool = True
    # The server's context window for every model it serves (per model: the `[[models]]`
    # catalogue); a longer prompt is refused, estimated, before the call.
    max_context_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None


C = TypeVar("C", bound=ChatHttpConfig)


class HttpChat(HttpApiProvider[C], GuardedChat):
    operation = "chat"
    # Whether the API has a place for a message's speaker name (ChatMessage.name).
    carries_names = False

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(
            models=tuple(self._config.models),
            streaming=True,
            tools=self._config.tools,
            vision=self._config.vision,
            json_schema=self._config.json_schema,
            names=self.carries_names,
            max_context_tokens=self._config.max_context_tokens,
            options=self._options(),
        )

    def _options(self) -> frozenset[ChatOption]:
        """The optional call fields this provider passes to its API."""
        return frozenset()

    async def _stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ChatEvent, None]:
        body = msgspec.json.encode(self._body(messages, params))
        stream = stream_with_retry(
            lambda: self._attempt(body), self._config.retry, self._sleep, name=self._op
        )
        async with aclosing(stream):
            async for event in stream:
                yield event

    def _body(self, messages: list[ChatMessage], params: ChatParams) -> dict[str, Any]:
        raise NotImplementedError

    def _attempt(self, body: bytes) -> AsyncGenerator[ChatEvent, None]:
        """One HTTP call, streamed; retried by _stream_chat only before its first event."""
        raise NotImplementedError
