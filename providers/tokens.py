"""A cheap token estimate for budgets and batching, where exact counts would cost a tokenizer."""

from __future__ import annotations


def estimate_tokens(text: str) -> int:
    """About four characters a token for English text; never zero."""
    return len(text) // 4 + 1
