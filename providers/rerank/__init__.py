"""Rerank providers: the registry and the interface."""

from providers.registry import Registry
from providers.rerank.base import RerankCapabilities, RerankProvider, Scores

rerank_providers: Registry[RerankProvider] = Registry("rerank")
rerank_providers.register_lazy(
    "local-minilm-biencoder", "providers.rerank.local_minilm_biencoder:create"
)
rerank_providers.register_lazy("tei", "providers.rerank.tei:create")
rerank_providers.register_lazy("cohere", "providers.rerank.cohere:create")
rerank_providers.register_lazy("jina", "providers.rerank.jina:create")

__all__ = ["RerankCapabilities", "RerankProvider", "Scores", "rerank_providers"]
