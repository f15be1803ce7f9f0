"""A registry per provider category: register a factory by name, create from config.

Third-party packages add providers through the entry-point group
``fleet.providers.<category>``; those are loaded on the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

import msgspec

from contracts.errors import ConfigError
from contracts.secrets import decode_secret
from providers.shared import NOTHING_SHARED, Shared

P = TypeVar("P")
C = TypeVar("C", bound=msgspec.Struct)
# A factory gets the provider's config and what the process shares (its Redis pool).
Factory = Callable[[Mapping[str, Any], Shared], P]


class Registry(Generic[P]):
    def __init__(self, category: str) -> None:
        self.category = category
        self._factories: dict[str, Factory[P]] = {}
        self._entry_points_loaded = False

    def register(self, name: str, factory: Factory[P]) -> None:
        if name in self._factories:
            raise ConfigError(f"{self.category} provider {name!r} is already registered")
        self._factories[name] = factory

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:factory"``, imported on first use (keeps heavy
        model libraries out of processes that never create this provider)."""
        module_name, _, attr = target.partition(":")

        def factory(config: Mapping[str, Any], shared: Shared) -> P:
            real: Factory[P] = getattr(import_module(module_name), attr)
            return real(config, shared)

        self.register(name, factory)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._factories)

    def create(
        self, name: str, config: Mapping[str, Any] | None = None, shared: Shared = NOTHING_SHARED
    ) -> P:
        self._load_entry_points()
        factory = self._factories.get(name)
        if factory is None:
            known = ", ".join(sorted(self._factories)) or "none"
            raise ConfigError(f"unknown {self.category} provider {name!r}; registered: {known}")
        return factory(config or {}, shared)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=f"fleet.providers.{self.category}"):
            if ep.name not in self._factories:
                self._factories[ep.name] = ep.load()


def parse_config(provider: str, config: Mapping[str, Any], config_type: type[C]) -> C:
    """Validate a provider's config; the error names the provider and the bad field."""
    try:
        return msgspec.convert(dict(config), config_type, dec_hook=decode_secret)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config for provider {provider!r}: {exc}") from exc
