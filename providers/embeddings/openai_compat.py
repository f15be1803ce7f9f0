"""Embeddings over the OpenAI embeddings API (and compatible servers: vLLM, Ollama, TEI)."""

from __future__ import annotations

import array
import base64
import math
import sys
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import httpx
import msgspec

from contracts.errors import ErrorCode
from contracts.usage import Usage
from providers.call_retry import call_with_retry, with_timeout
from providers.embeddings.base import EmbeddingCapabilities, Embeddings
from providers.errors import ProviderError
from providers.http_api import (
    HttpApiProvider,
    HttpConfig,
    auth_headers,
    decode_json,
    error_from_exception,
    raise_for_status,
)
from providers.registry import parse_config
from providers.shared import Shared


class OpenAIEmbeddingsConfig(HttpConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "openai"
    base_url: str = "https://api.openai.com/v1"
    dimension: Annotated[int, msgspec.Meta(ge=1)]
    # Send `dimensions` to shorten vectors server-side (text-embedding-3 only; other
    # servers reject the field).
    request_dimension: bool = False
    # base64 is a quarter of the JSON size for the same floats; not every server has it.
    encoding_format: Literal["float", "base64"] = "float"
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=2048)] = 2048
    max_input_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = 8191


class _Item(msgspec.Struct, frozen=True):
    index: int
    embedding: list[float] | str


class _Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0


class _Response(msgspec.Struct, frozen=True):
    data: list[_Item]
    usage: _Usage | None = None


def _floats(raw: list[float] | str) -> list[float]:
    if isinstance(raw, list):
        return raw
    packed = array.array("f", base64.b64decode(raw))  # little-endian float32
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tolist()


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:
        return vector
    return [x / norm for x in vector]


class OpenAIEmbeddings(HttpApiProvider[OpenAIEmbeddingsConfig]):
    operation = "embed"

    @property
    def capabilities(self) -> EmbeddingCapabilities:
        return EmbeddingCapabilities(
            models=tuple(self._config.models),
            dimension=self._config.dimension,
            max_batch=self._config.max_batch,
            max_input_tokens=self._config.max_input_tokens,
        )

    async def embed(self, texts: list[str], *, model: str) -> Embeddings:
        self._check_model(model)
        if not texts:
            return Embeddings(vectors=[], model=model)
        if len(texts) > self._config.max_batch:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                self._op,
                f"{len(texts)} texts in one call; at most {self._config.max_batch}",
            )
        body: dict[str, Any] = {
            "model": model,
            "input": texts,
            "encoding_format": self._config.encoding_format,
        }
        if self._config.request_dimension:
            body["dimensions"] = self._config.dimension
        content = msgspec.json.encode(body)
        # The deadline sits inside the breaker so that a call that hangs counts against
        # the provider like any other timeout.
        response = await call_with_retry(
            lambda: self._breaker.call(
                lambda: with_timeout(lambda: self._post(content), self._config.timeout_s, self._op)
            ),
            self._config.retry,
            self._sleep,
            name=self._op,
        )
        return self._embeddings(response, len(texts), model)

    async def _post(self, content: bytes) -> _Response:
        headers = {
            **self._config.headers,
            **auth_headers(self._config.api_key),
            "content-type": "application/json",
        }
        try:
            response = await self._http.client.post(
                f"{self._base}/embeddings", content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, op=self._op, redact=self._redact) from exc
        await raise_for_status(response, op=self._op, redact=self._redact)
        parsed: _Response = decode_json(
            response.content, _Response, op=self._op, redact=self._redact
        )
        return parsed

    def _embeddings(self, response: _Response, count: int, model: str) -> Embeddings:
        # The API documents `index` as the input position; order in `data` is not promised.
        by_index = {item.index: item for item in response.data}
        if sorted(by_index) != list(range(count)):
            raise ProviderError(
                ErrorCode.UNEXPECTED_RESPONSE,
                self._op,
                f"expected vectors for inputs 0..{count - 1}, got indices {sorted(by_index)}",
            )
        vectors = [_normalised(_floats(by_index[i].embedding)) for i in range(count)]
        wrong = {len(v) for v in vectors} - {self._config.dimension}
        if wrong:
            raise ProviderError(
                ErrorCode.INTERNAL,
                self._op,
                f"model {model!r} returned {sorted(wrong)}-dimensional vectors; the config "
                f"says dimension={self._config.dimension}",
            )
        tokens = response.usage.prompt_tokens if response.usage else 0
        # The requested name, not the server's: routing and replies speak in config names.
        return Embeddings(vectors=vectors, model=model, usage=Usage(prompt_tokens=tokens))


def create(config: Mapping[str, Any], shared: Shared) -> OpenAIEmbeddings:
    parsed = parse_config(str(config.get("name", "openai")), config, OpenAIEmbeddingsConfig)
    return OpenAIEmbeddings(parsed)
