"""Conversation memory stores: the registry and the interface."""

from collections.abc import Mapping
from typing import Any

from providers.memory.base import MemoryStore
from providers.registry import Registry

memory_stores: Registry[MemoryStore] = Registry("memory")


def _redis(config: Mapping[str, Any]) -> MemoryStore:
    from providers.memory.redis_memory import create

    return create(config)


memory_stores.register("redis", _redis)

__all__ = ["MemoryStore", "memory_stores"]
