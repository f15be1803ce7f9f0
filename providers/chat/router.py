"""Picks the chat provider that serves a request's model among those a worker configured."""

from __future__ import annotations

from contracts.errors import ErrorCode
from providers.chat.base import ChatProvider
from providers.errors import ProviderError


class ChatRouter:
    def __init__(self, providers: list[ChatProvider]) -> None:
        self._by_name = {p.name: p for p in providers}
        self._by_model: dict[str, ChatProvider] = {}
        for provider in providers:
            for model in provider.capabilities.models:
                self._by_model.setdefault(model, provider)

    @property
    def providers(self) -> list[ChatProvider]:
        return list(self._by_name.values())

    @property
    def models(self) -> list[str]:
        return sorted(self._by_model)

    def resolve(self, model: str, provider: str | None = None) -> ChatProvider:
        if provider is not None:
            chosen = self._by_name.get(provider)
            if chosen is None:
                known = ", ".join(sorted(self._by_name)) or "none"
                raise ProviderError(
                    ErrorCode.NOT_FOUND,
                    "chat.route",
                    f"chat provider {provider!r} is not configured on this worker; "
                    f"configured: {known}",
                )
            if model not in chosen.capabilities.models:
                raise ProviderError(
                    ErrorCode.NOT_FOUND,
                    "chat.route",
                    f"provider {provider!r} does not serve model {model!r}; "
                    f"it serves: {', '.join(chosen.capabilities.models)}",
                )
            return chosen
        found = self._by_model.get(model)
        if found is None:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                "chat.route",
                f"unknown model {model!r}; this worker serves: {', '.join(self.models) or 'none'}",
            )
        return found
