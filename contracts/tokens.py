"""A cheap token estimate for budgets and batching, where exact counts would cost a tokenizer."""

from __future__ import annotations

import msgspec

from contracts.content import images_in, text_of
from contracts.generate import ChatMessage, ToolSpec

# What a picture costs, roughly: OpenAI counts 765 tokens for a 1024x1024 image at high
# detail, Anthropic about 1,600 for the largest it keeps (1.15 megapixels).
IMAGE_TOKENS = 1000
# What a chat template adds around each message (role, separators), roughly.
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """About four characters a token for English text; never zero."""
    return len(text) // 4 + 1


def estimate_rerank_tokens(query: str, documents: list[str]) -> int:
    """What a reranker reads: a cross-encoder reads the query beside every document."""
    return sum(estimate_tokens(query) + estimate_tokens(d) for d in documents)


def estimate_message_tokens(message: ChatMessage) -> int:
    """One chat message: its text, its images, and the names and arguments of the tools it
    calls."""
    calls = message.tool_calls or ()
    images = len(images_in(message.content)) * IMAGE_TOKENS
    return (
        estimate_tokens(text_of(message.content))
        + images
        + sum(estimate_tokens(call.name + call.arguments) for call in calls)
    )


def estimate_prompt_tokens(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> int:
    """A whole prompt: its messages, what the chat template adds to each, and the tools'
    definitions the provider sends with them."""
    tokens = sum(estimate_message_tokens(m) + MESSAGE_OVERHEAD_TOKENS for m in messages)
    if tools:
        tokens += estimate_tokens(msgspec.json.encode(tools).decode())
    return tokens
