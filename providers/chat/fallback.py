"""A chat provider that tries other chat providers in order until one answers.

It moves on only on a retryable failure (or an open circuit), or a prompt too long for a
provider's context, before any text was yielded: once a provider has started answering,
switching would splice two different answers. After an overflow it passes over the links
whose window is no larger than the one the prompt did not fit.
Providers that cannot honour a request (tools, images, response_format, an option they
lack) are passed over; when none can, the request is refused with invalid_input naming what
each lacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import msgspec

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from providers.catalogue import ModelEntry
from providers.chat.base import (
    ChatCapabilities,
    ChatDone,
    ChatEvent,
    ChatOption,
    ChatParams,
    ChatProvider,
)
from providers.chat.guarded import GuardedChat
from providers.chat.streams import closing
from providers.chat.support import unsupported
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import Shared

log = logging.getLogger(__name__)


class FallbackEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str  # a name in the chat registry
    config: dict[str, Any] = {}
    # Used on this provider when it does not serve the requested model (e.g. a local model
    # standing in for a hosted one). Without it, such a provider is skipped.
    model: str | None = None


class FallbackConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "fallback"
    providers: Annotated[list[FallbackEntry], msgspec.Meta(min_length=1)]


class FallbackChat(GuardedChat):
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
        return ChatCapabilities(
            models=tuple(models),
            streaming=all(c.streaming for c in caps),
            tools=any(c.tools for c in caps),
            vision=any(c.vision for c in caps),
            json_schema=any(c.json_schema for c in caps),
            names=any(c.names for c in caps),
            options=frozenset[ChatOption]().union(*(c.options for c in caps)),
            # The largest window: a request that fits none of the links is refused before
            # any call; one that fits some goes to those.
            max_context_tokens=_largest([c.max_context_tokens for c in caps]),
            per_model={model: self._model_entry(model) for model in models},
        )

    def _model_entry(self, model: str) -> ModelEntry:
        """What the chain can do for ``model``: what any of its links can, in the largest
        of their windows."""
        caps = [p.capabilities.for_model(m) for p, m in self._chain(model)]
        return ModelEntry(
            name=model,
            context_tokens=_largest([c.max_context_tokens for c in caps]),
            streaming=all(c.streaming for c in caps),
            tools=any(c.tools for c in caps),
            vision=any(c.vision for c in caps),
            json_schema=any(c.json_schema for c in caps),
        )

    def links_for(self, model: str) -> list[tuple[ChatProvider, str]]:
        """The links that serve ``model``, in order, each with the model it runs for it."""
        return self._chain(model)

    def _chain(self, model: str) -> list[tuple[ChatProvider, str]]:
        # A substitute stands in for a model the chain serves, never for any name at all:
        # a misspelt or unknown model is not_found, as the chain's capabilities say.
        if model not in self._substitutes and not any(
            model in p.capabilities.models for p in self._providers
        ):
            return []
        chain: list[tuple[ChatProvider, str]] = []
        for provider, substitute in zip(self._providers, self._substitutes, strict=True):
            if model in provider.capabilities.models:
                chain.append((provider, model))
            elif substitute is not None:
                chain.append((provider, substitute))
        return chain

    def check(self, messages: list[ChatMessage], params: ChatParams) -> None:
        """Refuse a call no link can take: the model none serves (not_found), or what
        none can honour (invalid_input, naming what each lacks). Each link holds the calls
        it is given to its own capabilities and window."""
        self._able(self._served(params.model), messages, params)

    async def _stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        failures: list[ProviderError] = []
        overflowed = 0  # the largest window the prompt was found not to fit
        for provider, model in self._able(self._served(params.model), messages, params):
            call_params = _params_for(params, model)
            window = provider.capabilities.for_model(model).max_context_tokens
            if window is not None and window <= overflowed:
                failures.append(self._too_small(provider, model, window, overflowed))
                continue
            yielded = False
            try:
                async with closing(provider.stream_chat(messages, call_params)) as stream:
                    async for event in stream:
                        yielded = True
                        yield _answered_by(event, provider, model)
                return
            except ProviderError as exc:
                overflow = exc.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
                if yielded or not (exc.retryable or overflow):
                    raise
                if overflow and window is not None:
                    overflowed = max(overflowed, window)
                failures.append(exc)
                log.warning(
                    "%s: %s failed, trying the next provider: %s", self._op, provider.name, exc
                )
        raise self._exhausted(failures)

    def _served(self, model: str) -> list[tuple[ChatProvider, str]]:
        """The chain for ``model``, or not_found."""
        chain = self._chain(model)
        if not chain:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                self._op,
                f"no provider in the chain serves model {model!r}; served: "
                f"{', '.join(self.capabilities.models)}",
            )
        return chain

    def _too_small(
        self, provider: ChatProvider, model: str, window: int, overflowed: int
    ) -> ProviderError:
        return ProviderError(
            ErrorCode.CONTEXT_LENGTH_EXCEEDED,
            f"{provider.name}.chat",
            f"not tried: the {window}-token context of model {model!r} is no larger than "
            f"the {overflowed}-token one the prompt did not fit",
        )

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
            reason = unsupported(provider.capabilities, messages, _params_for(params, model))
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
        # Retryable when any link failed for a passing reason: a later try may find it well.
        retryable = [f for f in failures if f.retryable]
        last = retryable[-1] if retryable else failures[-1]
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


def _largest(windows: list[int | None]) -> int | None:
    """The largest of the windows; None (no limit known) when any is unknown."""
    known = [w for w in windows if w is not None]
    return max(known) if known and len(known) == len(windows) else None


def _params_for(params: ChatParams, model: str) -> ChatParams:
    return params if model == params.model else msgspec.structs.replace(params, model=model)


def _answered_by(event: ChatEvent, provider: ChatProvider, model: str) -> ChatEvent:
    """The final event names the link that answered (unless a chain inside named its own)."""
    if isinstance(event, ChatDone) and event.provider is None:
        return msgspec.structs.replace(event, provider=provider.name, model=model)
    return event


def create(config: Mapping[str, Any], shared: Shared) -> FallbackChat:
    # The package imports this module lazily, and catalogued.py imports it.
    from providers.chat import chat_providers
    from providers.chat.catalogued import with_catalogue

    parsed = parse_config(str(config.get("name", "fallback")), config, FallbackConfig)
    providers = [
        with_catalogue(chat_providers.create(e.name, e.config, shared), shared.models)
        for e in parsed.providers
    ]
    return FallbackChat(
        providers, substitutes=[e.model for e in parsed.providers], name=parsed.name
    )
