"""Hugging Face text-embeddings-inference's `/rerank` (a cross-encoder it serves)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from providers.http_api import decode_json
from providers.registry import parse_config
from providers.rerank.http_rerank import Hit, HttpRerankConfig, HttpReranker
from providers.shared import Shared


class TeiRerankConfig(HttpRerankConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "tei"
    # TEI's own --max-client-batch-size (32 unless the server was started with another).
    max_documents: Annotated[int, msgspec.Meta(ge=1)] = 32


class TeiReranker(HttpReranker[TeiRerankConfig]):
    path = "/rerank"
    health_path = "/health"

    def body(
        self, query: str, documents: list[str], model: str, max_tokens_per_doc: int | None
    ) -> dict[str, Any]:
        # One model per server: no model field. `truncate` cuts texts longer than the
        # model takes instead of refusing them, as the other APIs do.
        return {"query": query, "texts": documents, "truncate": True}

    def read(self, content: bytes) -> tuple[list[Hit], int | None]:
        hits: list[Hit] = decode_json(content, list[Hit], op=self._op, redact=self._redact)
        return hits, None


def create(config: Mapping[str, Any], shared: Shared) -> TeiReranker:
    return TeiReranker(parse_config(str(config.get("name", "tei")), config, TeiRerankConfig))
