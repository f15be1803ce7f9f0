"""Cohere's rerank API, version 2 (`POST /v2/rerank`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from providers.http_api import decode_json
from providers.registry import parse_config
from providers.rerank.http_rerank import Hit, HttpRerankConfig, HttpReranker
from providers.shared import Shared


class CohereRerankConfig(HttpRerankConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "cohere"
    base_url: str = "https://api.cohere.com/v2"


class _Result(msgspec.Struct, frozen=True):
    index: int
    relevance_score: float


class _Answer(msgspec.Struct, frozen=True):
    results: list[_Result]


class CohereReranker(HttpReranker[CohereRerankConfig]):
    path = "/rerank"
    truncates_documents = True

    def body(
        self, query: str, documents: list[str], model: str, max_tokens_per_doc: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "query": query,
            "documents": documents,
            "top_n": len(documents),
        }
        if max_tokens_per_doc is not None:
            body["max_tokens_per_doc"] = max_tokens_per_doc
        return body

    def read(self, content: bytes) -> tuple[list[Hit], int | None]:
        answer: _Answer = decode_json(content, _Answer, op=self._op, redact=self._redact)
        # Cohere bills search units, not tokens: the tokens are estimated.
        return [Hit(r.index, r.relevance_score) for r in answer.results], None


def create(config: Mapping[str, Any], shared: Shared) -> CohereReranker:
    parsed = parse_config(str(config.get("name", "cohere")), config, CohereRerankConfig)
    return CohereReranker(parsed)
