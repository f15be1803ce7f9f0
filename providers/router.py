"""Picks the provider that serves a request's model among those a worker configured."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from contracts.errors import ErrorCode
from providers.errors import ProviderError


class _Capabilities(Protocol):
    @property
    def models(self) -> tuple[str, ...]: ...


class _ServesModels(Protocol):
    name: str

    @property
    def capabilities(self) -> _Capabilities: ...


P = TypeVar("P", bound=_ServesModels)


class ModelRouter(Generic[P]):
    def __init__(self, category: str, providers: list[P]) -> None:
        self.category = category
        self._by_name = {p.name: p for p in providers}
        self._by_model: dict[str, P] = {}
        for provider in providers:
            for model in provider.capabilities.models:
                self._by_model.setdefault(model, provider)

    @property
    def providers(self) -> list[P]:
        return list(self._by_name.values())

    @property
    def models(self) -> list[str]:
        return sorted(self._by_model)

    def resolve(self, model: str, provider: str | None = None) -> P:
        op = f"{self.category}.route"
        if provider is not None:
            chosen = self._by_name.get(provider)
            if chosen is None:
                known = ", ".join(sorted(self._by_name)) or "none"
                raise ProviderError(
                    ErrorCode.NOT_FOUND,
                    op,
                    f"{self.category} provider {provider!r} is not configured on this worker; "
                    f"configured: {known}",
                )
            if model not in chosen.capabilities.models:
                served = ", ".join(chosen.capabilities.models)
                raise ProviderError(
                    ErrorCode.NOT_FOUND,
                    op,
                    f"provider {provider!r} does not serve model {model!r}; it serves: {served}",
                )
            return chosen
        found = self._by_model.get(model)
        if found is None:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                op,
                f"unknown {self.category} model {model!r}; this worker serves: "
                f"{', '.join(self.models) or 'none'}",
            )
        return found
