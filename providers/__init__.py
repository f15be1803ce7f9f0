"""Providers: one registry per category, the interfaces, and the provider error type."""

from providers.errors import ProviderError
from providers.registry import Registry, parse_config

__all__ = ["ProviderError", "Registry", "parse_config"]
