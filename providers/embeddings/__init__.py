"""Embedding providers: the registry and the interface."""

from providers.embeddings.base import EmbeddingCapabilities, EmbeddingProvider, Embeddings
from providers.registry import Registry

embedding_providers: Registry[EmbeddingProvider] = Registry("embeddings")
embedding_providers.register_lazy("local-minilm", "providers.embeddings.local_minilm:create")
embedding_providers.register_lazy(
    "sentence-transformers", "providers.embeddings.local_sentence_transformers:create"
)
embedding_providers.register_lazy("openai", "providers.embeddings.openai_compat:create")

__all__ = ["EmbeddingCapabilities", "EmbeddingProvider", "Embeddings", "embedding_providers"]
