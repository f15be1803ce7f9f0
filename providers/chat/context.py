"""Whether a call fits its model's context window, asked before the call is made: the prompt,
counted by the provider's tokenizer when it has one (otherwise estimated), plus the tokens
the answer may take. What does not fit is ``context_length_exceeded``: not retried, and a
fallback chain moves on to a model with a larger window."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from contracts.tokens import estimate_prompt_tokens
from providers.chat.base import ChatCapabilities, ChatParams
from providers.errors import ProviderError


@runtime_checkable
class CountsTokens(Protocol):
    """A provider that holds its models' tokenizer (the local llama engine)."""

    def count_prompt_tokens(self, messages: list[ChatMessage], model: str) -> int | None:
        """The prompt's tokens as the model reads them (its chat template included); None
        when the provider cannot count now (its model is not loaded)."""
        ...

    def count_text_tokens(self, text: str, model: str) -> int | None:
        """The tokens of a piece of text (an answer); None when it cannot count now."""
        ...


class PromptSize:
    """How many tokens a prompt takes, and whether that is a count or an estimate."""

    __slots__ = ("counted", "tokens")

    def __init__(self, tokens: int, *, counted: bool) -> None:
        self.tokens = tokens
        self.counted = counted

    def __str__(self) -> str:
        return f"{self.tokens} tokens" + ("" if self.counted else " (estimated)")


def prompt_size(provider: object, messages: list[ChatMessage], params: ChatParams) -> PromptSize:
    """The prompt's tokens: the provider's tokenizer's count, or else an estimate."""
    if isinstance(provider, CountsTokens):
        counted = provider.count_prompt_tokens(messages, params.model)
        if counted is not None:
            return PromptSize(counted, counted=True)
    return PromptSize(estimate_prompt_tokens(messages, params.tools), counted=False)


def overflow(context_tokens: int | None, prompt: PromptSize, params: ChatParams) -> str | None:
    """Why the call does not fit a window of ``context_tokens``; None when it fits (or the
    window is unknown). With no max_tokens the answer needs room for one token at least."""
    if context_tokens is None:
        return None
    answer = params.max_tokens or 1
    if prompt.tokens + answer <= context_tokens:
        return None
    asked = f"max_tokens {params.max_tokens}" if params.max_tokens else "room for an answer"
    return (
        f"the prompt is {prompt} and the request asks for {asked}: more than the "
        f"{context_tokens}-token context of model {params.model!r}"
    )


def require_room(
    capabilities: ChatCapabilities,
    messages: list[ChatMessage],
    params: ChatParams,
    *,
    counter: object,
    provider: str,
    op: str,
) -> None:
    """Raise context_length_exceeded, before any call, when the prompt and max_tokens do not
    fit the model's window (as the catalogue narrows it); ``counter`` is asked to count
    when it has a tokenizer."""
    window = capabilities.for_model(params.model).max_context_tokens
    if window is None:
        return
    why = overflow(window, prompt_size(counter, messages, params), params)
    if why is not None:
        raise ProviderError(
            ErrorCode.CONTEXT_LENGTH_EXCEEDED,
            op,
            f"provider {provider!r} cannot take this request: {why}; shorten the "
            "conversation or max_tokens, or send it to a model with a larger context",
        )
