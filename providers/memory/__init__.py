"""Conversation memory stores: the registry and the interface."""

from providers.memory.base import MemoryStore
from providers.registry import Registry

memory_stores: Registry[MemoryStore] = Registry("memory")

memory_stores.register_lazy("redis", "providers.memory.redis_memory:create")

__all__ = ["MemoryStore", "memory_stores"]
