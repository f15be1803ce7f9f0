"""The OpenAI-compatible embeddings provider against recorded responses."""

from __future__ import annotations

import base64
import json
import logging
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.errors import ConfigError, ErrorCode
from providers.embeddings import EmbeddingProvider, embedding_providers
from providers.embeddings.openai_compat import OpenAIEmbeddings, OpenAIEmbeddingsConfig
from providers.errors import ProviderError
from providers.registry import parse_config
from tests.conformance.embeddings import EmbeddingProviderConformance
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay

MODEL = "text-embedding-3-small"
TEXTS = ["first", "second", "third"]


def make(replay: Replay, *, sleep: FakeSleep | None = None, **overrides: Any) -> OpenAIEmbeddings:
    raw: dict[str, Any] = {"api_key": API_KEY, "models": [MODEL], "dimension": 4, **overrides}
    config = parse_config("openai", raw, OpenAIEmbeddingsConfig)
    return OpenAIEmbeddings(
        config, transport=replay.transport(), sleep=sleep or FakeSleep(), clock=FakeClock()
    )


async def embed(replay: Replay, texts: list[str] = TEXTS, **overrides: Any) -> Any:
    provider = make(replay, **overrides)
    try:
        return await provider.embed(texts, model=MODEL)
    finally:
        await provider.aclose()


async def test_vectors_follow_the_index_field_and_are_normalised() -> None:
    replay = Replay().json(200, "openai/embeddings.json")
    result = await embed(replay)
    # The recording lists index 2, 0, 1; inputs come back in input order.
    assert result.vectors[0] == pytest.approx([0.6, 0.8, 0.0, 0.0])
    assert result.vectors[1] == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert result.vectors[2] == pytest.approx([0.0, 0.0, 0.6, 0.8])
    for vector in result.vectors:
        assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0)
    assert result.model == MODEL
    assert result.usage.input_tokens == 12

    request = replay.requests[0]
    assert str(request.url) == "https://api.openai.com/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = json.loads(request.content)
    assert body == {"model": MODEL, "input": TEXTS, "encoding_format": "float"}


async def test_base64_vectors_are_decoded() -> None:
    def packed(*xs: float) -> str:
        return base64.b64encode(struct.pack(f"<{len(xs)}f", *xs)).decode()

    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": packed(3.0, 0.0, 0.0, 4.0)},
            {"object": "embedding", "index": 1, "embedding": packed(0.0, 1.0, 0.0, 0.0)},
        ],
        "model": MODEL,
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    replay = Replay().raw(200, json.dumps(body).encode())
    result = await embed(replay, ["a", "b"], encoding_format="base64", request_dimension=True)
    assert result.vectors[0] == pytest.approx([0.6, 0.0, 0.0, 0.8])
    assert result.vectors[1] == pytest.approx([0.0, 1.0, 0.0, 0.0])
    sent = json.loads(replay.requests[0].content)
    assert sent["encoding_format"] == "base64"
    assert sent["dimensions"] == 4


async def test_no_texts_no_request() -> None:
    replay = Replay()
    result = await embed(replay, [])
    assert result.vectors == []
    assert replay.requests == []


async def test_wrong_dimension_is_an_internal_error_naming_both() -> None:
    replay = Replay().json(200, "openai/embeddings.json")
    with pytest.raises(ProviderError) as info:
        await embed(replay, dimension=1536)
    assert info.value.code is ErrorCode.INTERNAL
    assert "1536" in info.value.detail
    assert "[4]" in info.value.detail


async def test_missing_index_is_a_typed_unexpected_response() -> None:
    replay = Replay().json(200, "openai/embeddings.json")
    with pytest.raises(ProviderError) as info:
        await embed(replay, ["a", "b", "c", "d"])
    assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE


async def test_401_is_auth_and_not_retried() -> None:
    replay = Replay().json(401, "openai/error_401_invalid_api_key.json")
    with pytest.raises(ProviderError) as info:
        await embed(replay)
    assert info.value.code is ErrorCode.AUTH
    assert len(replay.requests) == 1


async def test_429_waits_for_retry_after_then_succeeds() -> None:
    replay = (
        Replay()
        .json(429, "openai/error_429_rate_limit.json", {"retry-after": "3"})
        .json(200, "openai/embeddings.json")
    )
    sleep = FakeSleep()
    provider = make(replay, sleep=sleep)
    try:
        result = await provider.embed(TEXTS, model=MODEL)
    finally:
        await provider.aclose()
    assert len(result.vectors) == 3
    assert sleep.delays == [3.0]


async def test_500_is_retried_then_provider_down() -> None:
    replay = Replay().json(500, "openai/error_500.json")
    with pytest.raises(ProviderError) as info:
        await embed(replay, retry={"max_attempts": 3})
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert len(replay.requests) == 3


async def test_read_timeout_is_timeout() -> None:
    replay = Replay().timeout()
    with pytest.raises(ProviderError) as info:
        await embed(replay, retry={"max_attempts": 2})
    assert info.value.code is ErrorCode.TIMEOUT
    assert len(replay.requests) == 2


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"object": "list", "data": [{"index": "zero", "embedding": []}]}']
)
async def test_malformed_body_is_a_typed_unexpected_response(body: bytes) -> None:
    replay = Replay().raw(200, body)
    with pytest.raises(ProviderError) as info:
        await embed(replay, retry={"max_attempts": 1})
    assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE


async def test_422_from_a_compatible_server_is_invalid_input() -> None:
    body = b'{"detail": [{"loc": ["body", "input"], "msg": "field required"}]}'
    replay = Replay().raw(422, body)
    with pytest.raises(ProviderError) as info:
        await embed(replay)
    assert info.value.code is ErrorCode.INVALID_INPUT


async def test_unknown_model_and_oversized_batch_fail_before_any_request() -> None:
    replay = Replay()
    provider = make(replay, max_batch=2)
    try:
        with pytest.raises(ProviderError) as unknown:
            await provider.embed(["a"], model="ada-002")
        with pytest.raises(ProviderError) as big:
            await provider.embed(TEXTS, model=MODEL)
    finally:
        await provider.aclose()
    assert unknown.value.code is ErrorCode.NOT_FOUND
    assert big.value.code is ErrorCode.INVALID_INPUT
    assert replay.requests == []


async def test_api_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    replay = (
        Replay()
        .json(500, "openai/error_500.json")
        .json(401, "openai/error_401_invalid_api_key.json")
    )
    provider = make(replay)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.embed(TEXTS, model=MODEL)
    finally:
        await provider.aclose()
    assert "retry" in caplog.text
    for text in (repr(provider), repr(provider._config), str(info.value), caplog.text):
        assert API_KEY not in text


async def test_registered_and_conforming() -> None:
    provider = embedding_providers.create(
        "openai", {"models": [MODEL], "dimension": 1536, "api_key": "sk-x"}
    )
    try:
        assert isinstance(provider, OpenAIEmbeddings)
        assert isinstance(provider, EmbeddingProvider)
        assert provider.capabilities.dimension == 1536
    finally:
        await provider.aclose()
    with pytest.raises(ConfigError, match="dimension"):
        embedding_providers.create("openai", {"models": [MODEL]})


class TestConformance(EmbeddingProviderConformance):
    model = MODEL

    @pytest.fixture
    async def provider(self) -> AsyncIterator[EmbeddingProvider]:
        provider = make(Replay().json(200, "openai/embeddings.json"))
        yield provider
        await provider.aclose()


async def test_one_vector_per_token_is_a_typed_error_that_says_so() -> None:
    # llama.cpp's server started with --embedding and no pooling answers like this.
    body = b'{"data": [{"index": 0, "embedding": [[0.1, 0.2], [0.3, 0.4]]}]}'
    replay = Replay().raw(200, body)
    with pytest.raises(ProviderError) as info:
        await embed(replay, ["a"])
    assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE
    assert not info.value.retryable
    assert "expected shape" in info.value.detail
    assert len(replay.requests) == 1
