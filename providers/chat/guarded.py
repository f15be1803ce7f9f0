"""Each chat call held to what its provider says it can do, before any request is made: the
model it serves (not_found), what the call uses (tools, images, response_format and the
options: invalid_input, providers/chat/support.py) and, where the window is checked up
front, the context (context_length_exceeded, providers/chat/context.py).

This is the one place those checks are made. The package's providers inherit them from
GuardedChat; a wrapper of one (the catalogue's view, a rate limit) is a GuardedChat too,
checks once for both and calls the wrapped provider unchecked; ``guarded`` holds any other
provider (a test's, a third party's) the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from providers.chat.base import ChatCapabilities, ChatEvent, ChatParams, ChatProvider
from providers.chat.context import require_room
from providers.chat.streams import closing
from providers.chat.support import require_support
from providers.errors import ProviderError


class GuardedChat(ABC):
    """A chat provider whose ``stream_chat`` refuses what it cannot take (``check``), then
    makes the call (``_stream_chat``)."""

    name: str

    @property
    @abstractmethod
    def capabilities(self) -> ChatCapabilities: ...

    @property
    def checks_window(self) -> bool:
        """Whether the context window is checked before the call; False where the engine
        refuses an overflow itself, counting exactly as it reads the prompt."""
        return True

    @property
    def counter(self) -> object:
        """Who counts the prompt for the window check: a CountsTokens, or else it is
        estimated."""
        return self

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ChatEvent, None]:
        self.check(messages, params)
        async with closing(self._stream_chat(messages, params)) as events:
            async for event in events:
                yield event

    def check(self, messages: list[ChatMessage], params: ChatParams) -> None:
        """Raise the refusal of a call this provider cannot take; return when it can."""
        op = f"{self.name}.chat"
        capabilities = self.capabilities
        if params.model not in capabilities.models:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                op,
                f"model {params.model!r} is not served here; available: "
                f"{', '.join(capabilities.models)}",
            )
        require_support(capabilities, messages, params, provider=self.name, op=op)
        if self.checks_window:
            require_room(
                capabilities, messages, params, counter=self.counter, provider=self.name, op=op
            )

    def stream_unchecked(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        """The call without the checks: for whoever made them already (``check``)."""
        return self._stream_chat(messages, params)

    @abstractmethod
    def _stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        """The call, already checked."""


def check_call(provider: ChatProvider, messages: list[ChatMessage], params: ChatParams) -> None:
    """Refuse, as ``provider`` would, a call it cannot take: for a wrapper that checks in
    its place."""
    guarded(provider).check(messages, params)


def unchecked(
    provider: ChatProvider | GuardedChat, messages: list[ChatMessage], params: ChatParams
) -> AsyncIterator[ChatEvent]:
    """The call of ``provider`` without its checks: for a wrapper that made them already."""
    if isinstance(provider, GuardedChat):
        return provider.stream_unchecked(messages, params)
    return provider.stream_chat(messages, params)


def guarded(provider: ChatProvider) -> GuardedChat:
    """``provider``, holding each call to its capabilities: itself when it does so already."""
    if isinstance(provider, GuardedChat):
        return provider
    return _Held(provider)


class _Held(GuardedChat):
    """A provider that checks nothing itself, checked here."""

    def __init__(self, inner: ChatProvider) -> None:
        self.name = inner.name
        self._inner = inner

    @property
    def capabilities(self) -> ChatCapabilities:
        return self._inner.capabilities

    @property
    def counter(self) -> object:
        return self._inner

    def _stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        return self._inner.stream_chat(messages, params)
