"""A cheap token estimate for budgets and batching, where exact counts would cost a tokenizer."""

from __future__ import annotations

from contracts.generate import ChatMessage


def estimate_tokens(text: str) -> int:
    """About four characters a token for English text; never zero."""
    return len(text) // 4 + 1


def estimate_message_tokens(message: ChatMessage) -> int:
    """One chat message: its text, and the names and arguments of the tools it calls."""
    calls = message.tool_calls or ()
    return estimate_tokens(message.content) + sum(
        estimate_tokens(call.name + call.arguments) for call in calls
    )
