"""What the HTTP chat providers share: config fields, capabilities, and a streamed call
with retries; each provider says how to build its body and read its stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any, TypeVar

import msgspec

from contracts.generate import ChatMessage
from providers.call_retry import stream_with_retry
from providers.chat.base import ChatCapabilities, ChatEvent, ChatOption, ChatParams
from providers.chat.support import require_support
from providers.http_api.client import HttpConfig
from providers.http_api.provider import HttpApiProvider


class ChatHttpConfig(HttpConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # false for a server or model without tool calling: requests with tools are refused.
    tools: bool = True
    max_context_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None


C = TypeVar("C", bound=ChatHttpConfig)


class HttpChat(HttpApiProvider[C]):
    operation = "chat"

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(
            models=tuple(self._config.models),
            streaming=True,
            tools=self._config.tools,
            max_context_tokens=self._config.max_context_tokens,
            options=self._options(),
        )

    def _options(self) -> frozenset[ChatOption]:
        """The optional call fields this provider passes to its API."""
        return frozenset()

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        self._check_model(params.model)
        require_support(self.capabilities, messages, params, provider=self.name, op=self._op)
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
        """One HTTP call, streamed; retried by stream_chat only before its first event."""
        raise NotImplementedError
