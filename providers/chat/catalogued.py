"""A chat provider as the model catalogue describes its models: capabilities per model
(narrowed, never widened), and each call held to them, the model's context window too,
before it is made (counted by the provider's tokenizer when it has one). These checks
take the place of the provider's own, which they narrow."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from contracts.generate import ChatMessage
from providers.catalogue import ModelCatalogue
from providers.chat.base import ChatCapabilities, ChatEvent, ChatParams, ChatProvider
from providers.chat.context import CountsTokens
from providers.chat.fallback import FallbackChat
from providers.chat.guarded import GuardedChat, unchecked


class CataloguedChat(GuardedChat):
    def __init__(self, inner: ChatProvider, catalogue: ModelCatalogue) -> None:
        self.name = inner.name
        self._inner = inner
        self._entries = catalogue.for_provider(inner.name, inner.capabilities.models)

    def __repr__(self) -> str:
        return f"CataloguedChat({self._inner!r})"

    @property
    def inner(self) -> ChatProvider:
        return self._inner

    @property
    def capabilities(self) -> ChatCapabilities:
        own = self._inner.capabilities
        return msgspec.structs.replace(own, per_model={**own.per_model, **self._entries})

    def _stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        return unchecked(self._inner, messages, params)

    def count_prompt_tokens(self, messages: list[ChatMessage], model: str) -> int | None:
        if isinstance(self._inner, CountsTokens):
            return self._inner.count_prompt_tokens(messages, model)
        return None

    def count_text_tokens(self, text: str, model: str) -> int | None:
        if isinstance(self._inner, CountsTokens):
            return self._inner.count_text_tokens(text, model)
        return None

    async def load(self) -> None:
        await self._inner.load()

    async def health(self) -> bool:
        return await self._inner.health()

    async def aclose(self) -> None:
        await self._inner.aclose()


def with_catalogue(provider: ChatProvider, catalogue: ModelCatalogue) -> ChatProvider:
    """``provider`` seen through the catalogue; as it is when the catalogue says nothing of
    its models (it holds calls to its own window). A fallback chain is returned as it is
    too: it was made with its links seen through the catalogue, and its window is the
    largest of theirs, which an entry for the model asked for must not narrow."""
    if isinstance(provider, FallbackChat | CataloguedChat):
        return provider
    if not catalogue.for_provider(provider.name, provider.capabilities.models):
        return provider
    return CataloguedChat(provider, catalogue)
