"""A chat provider that tries other chat providers in order until one answers.

It moves on only on a retryable failure (or an open circuit) before any text was yielded:
once a provider has started answering, switching would splice two different answers.
Providers that cannot honour a request (tools, an option they lack) are passed over; when
none can, the request is refused with invalid_input naming what each lacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import msgspec

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from providers.chat.base import ChatCapabilities, ChatEvent, ChatOption, ChatParams, ChatProvider
from providers.chat.support import unsupported
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import Shared

log = logging.getLogger(__name__)


@asynccontextmanager
async def _closing(
    stream: AsyncIterator[ChatEvent],
) -> AsyncGenerator[AsyncIterator[ChatEvent], None]:
    """Close a provider's stream when we stop early (the protocol promises an iterator;
    every real one is an async generator with aclose)."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class FallbackEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str  # a name in the chat registry
    config: dict[str, Any] = {}
    # Used on this provider when it does not serve the requested model (e.g. a local model
    # standing in for a hosted one). Without it, such a provider is skipped.
    model: str | None = None


class FallbackConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "fallback"
    providers: Annotated[list[FallbackEntry], msgspec.Meta(min_length=1)]


class FallbackChat:
    def __init__(
        self,
        providers: list[ChatProvider],
        *,
        substitutes: list[str | None] | None = None,
        name: str = "fallback",
    ) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        self.name = name
        self._providers = providers
        self._substitutes = substitutes or [None] * len(providers)
        self._op = f"{name}.chat"

    def __repr__(self) -> str:
        return f"FallbackChat(name={self.name!r}, providers={self._providers!r})"

    @property
    def providers(self) -> list[ChatProvider]:
        return list(self._providers)

    @property
    def capabilities(self) -> ChatCapabilities:
        models: dict[str, None] = {}  # ordered, without duplicates
        for provider, substitute in zip(self._providers, self._substitutes, strict=True):
            models.update(dict.fromkeys(provider.capabilities.models))
            if substitute is not None:
                models[substitute] = None
        caps = [p.capabilities for p in self._providers]
        limits = [c.max_context_tokens for c in caps if c.max_context_tokens is not None]
        return ChatCapabilities(
            models=tuple(models),
            streaming=all(c.streaming for c in caps),
            tools=any(c.tools for c in caps),
            options=frozenset[ChatOption]().union(*(c.options for c in caps)),
            # The smallest window is the only one a request is sure to fit wherever it lands.
            max_context_tokens=min(limits) if limits else None,
        )

    def _chain(self, model: str) -> list[tuple[ChatProvider, str]]:
        chain: list[tuple[ChatProvider, str]] = []
        for provider, substitute in zip(self._providers, self._substitutes, strict=True):
            if model in provider.capabilities.models:
                chain.append((provider, model))
            elif substitute is not None:
                chain.append((provider, substitute))
        return chain

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        chain = self._chain(params.model)
        if not chain:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                self._op,
                f"no provider in the chain serves model {params.model!r}; served: "
                f"{', '.join(self.capabilities.models)}",
            )
        failures: list[ProviderError] = []
        for provider, model in self._able(chain, messages, params):
            call_params = (
                params if model == params.model else msgspec.structs.replace(params, model=model)
            )
            yielded = False
            try:
                async with _closing(provider.stream_chat(messages, call_params)) as stream:
                    async for event in stream:
                        yielded = True
                        yield event
                return
            except ProviderError as exc:
                if yielded or not exc.retryable:
                    raise
                failures.append(exc)
                log.warning(
                    "%s: %s failed, trying the next provider: %s", self._op, provider.name, exc
                )
        raise self._exhausted(failures)

    def _able(
        self,
        chain: list[tuple[ChatProvider, str]],
        messages: list[ChatMessage],
        params: ChatParams,
    ) -> list[tuple[ChatProvider, str]]:
        """The providers of the chain that can honour the call, or invalid_input."""
        able: list[tuple[ChatProvider, str]] = []
        lacking: list[str] = []
        for provider, model in chain:
            reason = unsupported(provider.capabilities, messages, params)
            if reason is None:
                able.append((provider, model))
            else:
                lacking.append(f"{provider.name}: {reason}")
        if not able:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                self._op,
                f"no provider in the chain for model {params.model!r} can take this "
                f"request ({'; '.join(lacking)})",
            )
        return able

    def _exhausted(self, failures: list[ProviderError]) -> ProviderError:
        last = failures[-1]
        waits = [f.retry_after_s for f in failures if f.retry_after_s is not None]
        summary = "; ".join(f"{f.op}: {f.detail} [{f.code}]" for f in failures)
        error = ProviderError(
            last.code,
            self._op,
            f"every provider failed: {summary}",
            retry_after_s=min(waits) if waits else None,
        )
        error.__cause__ = last
        return error

    async def load(self) -> None:
        await asyncio.gather(*(p.load() for p in self._providers))

    async def health(self) -> bool:
        results = await asyncio.gather(*(p.health() for p in self._providers))
        return any(results)

    async def aclose(self) -> None:
        # Close every provider even if one fails to close; report the first failure.
        results = await asyncio.gather(
            *(p.aclose() for p in self._providers), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result


def create(config: Mapping[str, Any], shared: Shared) -> FallbackChat:
    from providers.chat import chat_providers  # the package imports this module lazily

    parsed = parse_config(str(config.get("name", "fallback")), config, FallbackConfig)
    providers = [chat_providers.create(e.name, e.config, shared) for e in parsed.providers]
    return FallbackChat(
        providers, substitutes=[e.model for e in parsed.providers], name=parsed.name
    )
