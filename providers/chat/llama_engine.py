"""llama.cpp in this process through cyllama's prebuilt wheel: one model, one context, and
the token loop that streams a chat answer from them.

Why cyllama and not llama-cpp-python (which compiles llama.cpp for the build machine's CPU,
and crashed on CPUs with AVX-512/AMX): docs/decisions/0009-local-chat-engine.md. The wheel is
built for x86-64-v3 (AVX2, FMA, F16C) without AVX-512 or AMX kernels, so ``require_cpu``
refuses, with a message, a CPU that would fault on its first instruction.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from contracts.errors import ConfigError

# What the prebuilt wheel's kernels execute (read off its disassembly: ymm, no zmm).
_REQUIRED_X86_FLAGS: Final = ("avx2", "fma", "f16c")
# llama.cpp seeds are 32-bit, and this one (LLAMA_DEFAULT_SEED) means "pick one at random".
_RANDOM_SEED: Final = 0xFFFFFFFF


def llama_seed(seed: int) -> int:
    """A request's seed (0 to 2**63 - 1) as a llama.cpp seed: the same seed, the same one,
    never the value that asks for a random seed."""
    return seed % _RANDOM_SEED


class Penalties(msgspec.Struct, frozen=True, kw_only=True):
    """OpenAI's presence and frequency penalties, which llama.cpp's penalties sampler applies
    the same way (logit - frequency * count - presence * (count > 0)) over the tokens it
    generated."""

    presence: float = 0.0
    frequency: float = 0.0

    @property
    def active(self) -> bool:
        return self.presence != 0.0 or self.frequency != 0.0


class PromptTooLong(ValueError):
    """The prompt, and the room its answer asks for, do not fit the context window."""


class Generated(msgspec.Struct, kw_only=True):
    """What one ``stream`` call produced, filled in as it runs."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = "stop"


def require_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> None:
    """Refuse, with a message naming the missing instructions, a CPU the wheel cannot run on."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return  # other platforms get other wheels
    try:
        text = cpuinfo.read_text()
    except OSError:
        return  # no cpuinfo to read: let the model load say what it says
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    missing = [flag for flag in _REQUIRED_X86_FLAGS if flag not in flags]
    if missing:
        raise ConfigError(
            "provider 'local-llama' needs a CPU with AVX2, FMA and F16C (x86-64-v3); "
            f"this one lacks {', '.join(missing)}: serve chat through a remote provider instead"
        )


class _StopFilter:
    """Holds back text that may be the start of a stop sequence, and cuts at one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._keep = max((len(s) for s in self._stops), default=1) - 1
        self._pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text now safe to emit; sets ``stopped`` when a stop sequence appeared."""
        if not self._stops:
            return piece
        self._pending += piece
        cuts = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if cuts:
            self.stopped = True
            out, self._pending = self._pending[: min(cuts)], ""
            return out
        safe = len(self._pending) - self._keep
        out, self._pending = self._pending[:safe], self._pending[safe:]
        return out

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


def _go_on() -> None:
    return None


class LlamaEngine:
    """A GGUF model and its contexts: the first made at once, more on first use (each has a
    KV cache of its own, so a call paused on one keeps its place while another runs on
    another). Not thread-safe per context: the caller serialises the calls of each one."""

    def __init__(self, model_path: Path, *, n_ctx: int, n_threads: int) -> None:
        require_cpu()
        from cyllama.llama import llama_cpp  # heavy import: only when the provider is used

        self._ll: Any = llama_cpp
        llama_cpp.disable_logging()
        llama_cpp.ggml_backend_load_all()
        self._model: Any = llama_cpp.LlamaModel(str(model_path), llama_cpp.LlamaModelParams())
        self._vocab: Any = self._model.get_vocab()
        self._template: str = self._model.get_default_chat_template()
        params = llama_cpp.LlamaContextParams()
        params.n_ctx = n_ctx
        params.n_batch = min(n_ctx, 512)
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        self._params: Any = params
        self._contexts: list[Any] = [llama_cpp.LlamaContext(self._model, params)]
        self._n_ctx = n_ctx
        self._n_batch = params.n_batch

    @property
    def threads(self) -> int:
        """The threads each token is decoded on, as llama.cpp reports them."""
        return int(self._contexts[0].n_threads())

    def close(self) -> None:
        for ctx in self._contexts:
            ctx.close()
        self._model.close()

    def _context(self, index: int) -> Any:
        while len(self._contexts) <= index:
            self._contexts.append(self._ll.LlamaContext(self._model, self._params))
        return self._contexts[index]

    def prompt(self, messages: Sequence[tuple[str, str]]) -> str:
        """The chat rendered with the model's own template, ready for the assistant's turn."""
        chat = [self._ll.LlamaChatMessage(role=role, content=text) for role, text in messages]
        return str(self._model.chat_apply_template(self._template, chat, True))

    def count_tokens(self, text: str, *, special: bool) -> int:
        """The tokens of ``text``; ``special``: a rendered prompt (with the BOS token, and
        the template's markers read as the special tokens they are)."""
        return len(self._vocab.tokenize(text, add_special=special, parse_special=special))

    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float,
        top_p: float | None,
        stop: Sequence[str],
        seed: int,
        cancelled: threading.Event,
        result: Generated,
        penalties: Penalties,
        grammar: str | None = None,
        room: int = 1,
        context: int = 0,
        pause: Callable[[], None] = _go_on,
    ) -> Iterator[str]:
        """Yield the answer's text piece by piece; ``result`` holds the counts at the end.
        With a GBNF ``grammar`` (root rule ``root``) only tokens it allows are sampled. A
        prompt that leaves fewer than ``room`` tokens of the context for the answer is
        refused (PromptTooLong) before anything is decoded. It decodes on context number
        ``context``, and calls ``pause`` before each step (a prompt's batch, a token): a
        call that must give way to another waits there, its place kept in its context."""
        tokens = self._vocab.tokenize(prompt, add_special=True, parse_special=True)
        result.prompt_tokens = len(tokens)
        if len(tokens) + room > self._n_ctx:
            raise PromptTooLong(
                f"the prompt is {len(tokens)} tokens and the answer may take {room}: more "
                f"than the {self._n_ctx}-token context"
            )
        ctx = self._context(context)
        ctx.kv_cache_clear()
        for start in range(0, len(tokens), self._n_batch):
            pause()
            batch = tokens[start : start + self._n_batch]
            ctx.decode(self._ll.llama_batch_get_one(batch, start))
        sampler = self._sampler(
            temperature, top_p, llama_seed(seed), penalties, max_tokens, grammar
        )
        stops = _StopFilter(stop)
        position = len(tokens)
        result.finish_reason = "length"
        while result.output_tokens < max_tokens and position < self._n_ctx:
            pause()
            if cancelled.is_set():
                result.finish_reason = "cancelled"
                break
            token = sampler.sample(ctx, -1)
            if self._vocab.is_eog(token):
                result.finish_reason = "stop"
                break
            result.output_tokens += 1
            text = stops.feed(self._vocab.token_to_piece(token, special=False))
            if text:
                yield text
            if stops.stopped:
                result.finish_reason = "stop"
                return
            ctx.decode(self._ll.llama_batch_get_one([token], position))
            position += 1
        if tail := stops.flush():
            yield tail

    def _sampler(
        self,
        temperature: float,
        top_p: float | None,
        seed: int,
        penalties: Penalties,
        max_tokens: int,
        grammar: str | None,
    ) -> Any:
        sampler = self._ll.LlamaSampler(self._ll.LlamaSamplerChainParams())
        if grammar is not None:
            # First in the chain: it masks the tokens the grammar forbids, and the samplers
            # after it choose among the rest (the chain accepts each token into it too).
            sampler.add_grammar(self._vocab, grammar, "root")
        if penalties.active:
            # Over every token of the answer (the chain accepts each one it samples); the
            # repeat penalty stays off (1.0): it is not in the contract.
            sampler.add_penalties(max_tokens, 1.0, penalties.frequency, penalties.presence)
        if temperature <= 0:
            sampler.add_greedy()
            return sampler
        if top_p is not None:
            sampler.add_top_p(top_p, 1)
        sampler.add_temp(temperature)
        sampler.add_dist(seed)
        return sampler
