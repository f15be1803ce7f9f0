"""The optional sentence-transformers provider: a clear error without torch, real vectors with."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from contracts.errors import ConfigError
from providers.embeddings import EmbeddingProvider, embedding_providers
from tests.conformance.embeddings import EmbeddingProviderConformance

HAS_ST = importlib.util.find_spec("sentence_transformers") is not None
REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "minilm_fp32_reference.json"


class Item(msgspec.Struct):
    text: str
    vector: list[float]


class Reference(msgspec.Struct):
    items: list[Item]


@pytest.mark.skipif(HAS_ST, reason="sentence-transformers is installed here")
def test_missing_torch_gives_the_install_hint() -> None:
    with pytest.raises(ConfigError, match=r"pip install .*\[gpu\]"):
        embedding_providers.create("sentence-transformers")


@pytest.mark.model
@pytest.mark.skipif(not HAS_ST, reason="needs the optional extra: pip install 'ai-job-fleet[gpu]'")
async def test_reproduces_the_fp32_reference() -> None:
    reference = msgspec.json.decode(REFERENCE.read_bytes(), type=Reference)
    provider = embedding_providers.create("sentence-transformers", {"device": "cpu"})
    assert isinstance(provider, EmbeddingProvider)
    try:
        result = await provider.embed([i.text for i in reference.items], model="all-minilm-l6-v2")
    finally:
        await provider.aclose()
    vectors = np.array(result.vectors)
    expected = np.array([i.vector for i in reference.items])
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    assert result.usage.input_tokens > 0


@pytest.mark.model
@pytest.mark.skipif(not HAS_ST, reason="needs the optional extra: pip install 'ai-job-fleet[gpu]'")
class TestConformance(EmbeddingProviderConformance):
    model = "all-minilm-l6-v2"

    @pytest.fixture
    async def provider(self) -> AsyncIterator[EmbeddingProvider]:
        provider = embedding_providers.create("sentence-transformers", {"device": "cpu"})
        yield provider
        await provider.aclose()
