"""Jina's rerank API (`POST /v1/rerank`), which vLLM's `/v1/rerank` also speaks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from providers.http_api import decode_json
from providers.registry import parse_config
from providers.rerank.http_rerank import Hit, HttpRerankConfig, HttpReranker
from providers.shared import Shared


class JinaRerankConfig(HttpRerankConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "jina"
    base_url: str = "https://api.jina.ai/v1"


class _Result(msgspec.Struct, frozen=True):
    index: int
    relevance_score: float


class _Usage(msgspec.Struct, frozen=True):
    total_tokens: int | None = None


class _Answer(msgspec.Struct, frozen=True):
    results: list[_Result]
    usage: _Usage | None = None


class JinaReranker(HttpReranker[JinaRerankConfig]):
    path = "/rerank"

    def body(
        self, query: str, documents: list[str], model: str, max_tokens_per_doc: int | None
    ) -> dict[str, Any]:
        # The documents are the caller's already: none sent back.
        return {
            "model": model,
            "query": query,
            "documents": documents,
            "top_n": len(documents),
            "return_documents": False,
        }

    def read(self, content: bytes) -> tuple[list[Hit], int | None]:
        answer: _Answer = decode_json(content, _Answer, op=self._op, redact=self._redact)
        tokens = answer.usage.total_tokens if answer.usage else None
        return [Hit(r.index, r.relevance_score) for r in answer.results], tokens


def create(config: Mapping[str, Any], shared: Shared) -> JinaReranker:
    return JinaReranker(parse_config(str(config.get("name", "jina")), config, JinaRerankConfig))
