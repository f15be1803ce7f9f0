"""Usage for an answer whose provider reported none (llama.cpp server ignores
``stream_options.include_usage``; some gateways refuse it): the tokens counted by the model's
tokenizer where the provider has one, otherwise estimated, and the usage marked estimated."""

from __future__ import annotations

from contracts.content import text_of
from contracts.generate import ChatMessage
from contracts.tokens import estimate_message_tokens
from contracts.usage import Usage
from providers.chat.base import ChatParams
from providers.chat.context import CountsTokens, prompt_size


def completed_usage(
    usage: Usage,
    *,
    provider: object,
    messages: list[ChatMessage],
    params: ChatParams,
    answer: ChatMessage,
) -> Usage:
    """``usage`` as reported, or with the counts it lacks made here (``estimated``). A prompt
    is never empty, so no prompt tokens means none were reported; no answer tokens means
    so only when there was an answer."""
    answered = bool(text_of(answer.content) or answer.tool_calls)
    lacks_prompt = usage.prompt_tokens == 0
    lacks_answer = usage.completion_tokens == 0 and answered
    if not (lacks_prompt or lacks_answer):
        return usage
    prompt = usage.prompt_tokens
    if lacks_prompt:
        prompt = prompt_size(provider, messages, params).tokens
    completion = usage.completion_tokens
    if lacks_answer:
        completion = _answer_tokens(provider, answer, params.model)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        estimated=True,
    )


def _answer_tokens(provider: object, answer: ChatMessage, model: str) -> int:
    if isinstance(provider, CountsTokens):
        calls = "".join(call.name + call.arguments for call in answer.tool_calls or ())
        counted = provider.count_text_tokens(text_of(answer.content) + calls, model)
        if counted is not None:
            return counted
    return estimate_message_tokens(answer)
