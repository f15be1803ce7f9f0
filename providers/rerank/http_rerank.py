"""What the rerank APIs over HTTP share (TEI, Cohere v2, Jina v1 and vLLM): the call with
its retries and breaker, the checks before it, and the scores put back in input order. Each
API's module says only its path, its request body and how to read its answer."""

from __future__ import annotations

from abc import abstractmethod
from typing import Annotated, Any, ClassVar, TypeVar

import httpx
import msgspec

from contracts.errors import ErrorCode
from contracts.tokens import estimate_rerank_tokens
from contracts.usage import Usage
from providers.call_retry import call_with_retry, with_timeout
from providers.errors import ProviderError
from providers.http_api import (
    HttpApiProvider,
    HttpConfig,
    auth_headers,
    error_from_exception,
    raise_for_status,
)
from providers.rerank.base import RerankCapabilities, Scores


class HttpRerankConfig(HttpConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Documents one call sends; larger requests are split by the handler.
    max_documents: Annotated[int, msgspec.Meta(ge=1)] = 1000


class Hit(msgspec.Struct, frozen=True):
    """One scored document of an answer, in the API's order (TEI's answer is a list of
    these)."""

    index: int
    score: float


C = TypeVar("C", bound=HttpRerankConfig)


class HttpReranker(HttpApiProvider[C]):
    operation = "rerank"
    #: The endpoint, after base_url.
    path: ClassVar[str]
    #: Whether the API cuts each document to max_tokens_per_doc itself.
    truncates_documents: ClassVar[bool] = False

    @property
    def capabilities(self) -> RerankCapabilities:
        return RerankCapabilities(
            models=tuple(self._config.models),
            max_documents=self._config.max_documents,
            truncates_documents=self.truncates_documents,
        )

    async def rerank(
        self, query: str, documents: list[str], *, model: str, max_tokens_per_doc: int | None
    ) -> Scores:
        self._check_model(model)
        if len(documents) > self._config.max_documents:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                self._op,
                f"{len(documents)} documents in one call; at most {self._config.max_documents}",
            )
        if max_tokens_per_doc is not None and not self.truncates_documents:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                self._op,
                f"max_tokens_per_doc is not supported by {self.name!r}'s API",
            )
        content = msgspec.json.encode(self.body(query, documents, model, max_tokens_per_doc))
        # The deadline sits inside the breaker so that a call that hangs counts against
        # the provider like any other timeout.
        answer = await call_with_retry(
            lambda: self._breaker.call(
                lambda: with_timeout(lambda: self._post(content), self._config.timeout_s, self._op)
            ),
            self._config.retry,
            self._sleep,
            name=self._op,
        )
        hits, tokens = self.read(answer)
        return Scores(
            scores=self._in_order(hits, len(documents)), usage=_usage(tokens, query, documents)
        )

    @abstractmethod
    def body(
        self, query: str, documents: list[str], model: str, max_tokens_per_doc: int | None
    ) -> dict[str, Any]:
        """The request body; it asks for every document's score."""

    @abstractmethod
    def read(self, content: bytes) -> tuple[list[Hit], int | None]:
        """The answer's scored documents, and the tokens it says it read (None: unsaid)."""

    async def _post(self, content: bytes) -> bytes:
        headers = {**self._config.headers, **auth_headers(self._config.api_key)}
        try:
            response = await self._http.client.post(
                f"{self._base}{self.path}",
                content=content,
                headers={**headers, "content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, op=self._op, redact=self._redact) from exc
        await raise_for_status(response, op=self._op, redact=self._redact)
        return response.content

    def _in_order(self, hits: list[Hit], count: int) -> list[float]:
        # The APIs answer best first; `index` is the input position.
        by_index = {hit.index: hit.score for hit in hits}
        if len(hits) != count or sorted(by_index) != list(range(count)):
            raise ProviderError(
                ErrorCode.UNEXPECTED_RESPONSE,
                self._op,
                f"expected scores for documents 0..{count - 1}, got indices "
                f"{sorted(hit.index for hit in hits)}",
            )
        return [by_index[i] for i in range(count)]


def _usage(tokens: int | None, query: str, documents: list[str]) -> Usage:
    if tokens is not None:
        return Usage(prompt_tokens=tokens)
    return Usage(prompt_tokens=estimate_rerank_tokens(query, documents), estimated=True)
