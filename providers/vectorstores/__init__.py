"""Vector stores: the registry and the interface."""

from providers.registry import Registry
from providers.vectorstores.base import VectorItem, VectorStore

vector_stores: Registry[VectorStore] = Registry("vectorstores")
vector_stores.register_lazy("pgvector", "providers.vectorstores.pgvector:create")
vector_stores.register_lazy("redis", "providers.vectorstores.redis_vectors:create")
vector_stores.register_lazy("qdrant", "providers.vectorstores.qdrant:create")

__all__ = ["VectorItem", "VectorStore", "vector_stores"]
