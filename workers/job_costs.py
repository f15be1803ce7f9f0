"""What a job may cost at most before it runs, and what it cost once it answered, at the
model catalogue's prices (providers/catalogue.py: the one place prices are read)."""

from __future__ import annotations

from typing import Final

from contracts.codec import AnyRequest
from contracts.embed import EmbedRequest
from contracts.generate import GenerateRequest
from contracts.replies import (
    EmbedResult,
    ErrorReply,
    GenerateResult,
    RerankResult,
    SpeechResult,
)
from contracts.replies import (
    Final as FinalReply,
)
from contracts.rerank import RerankRequest, rank_texts
from contracts.speech import SpeechRequest
from contracts.tokens import estimate_prompt_tokens, estimate_rerank_tokens, estimate_tokens
from contracts.usage import Usage
from providers.catalogue import ModelCatalogue, ModelEntry

# The answer's length when a generate request sets no max_tokens and the catalogue knows no
# context window for its model: what the reservation assumes (docs/operations.md, Budgets).
UNBOUNDED_ANSWER_TOKENS: Final = 4096


def worst_case_usd(request: AnyRequest, models: ModelCatalogue) -> float:
    """The most ``request`` can cost at the highest price any provider of its model has in
    the catalogue: a generate's prompt (estimated) and its whole ``max_tokens``; an embed's
    or rerank's input tokens; a speech's characters. 0 for what the catalogue does not
    price (a model without prices, transcription, vector jobs)."""
    model = getattr(request, "model", None)
    entry = models.dearest(model) if isinstance(model, str) else None
    if entry is None:
        return 0.0
    cost: float | None = None
    if isinstance(request, GenerateRequest):
        prompt = estimate_prompt_tokens(request.messages, request.tools)
        answer = _answer_tokens(request, entry, prompt)
        cost = _priced(entry, Usage(prompt_tokens=prompt, completion_tokens=answer))
    elif isinstance(request, EmbedRequest):
        tokens = sum(estimate_tokens(text) for text in request.texts)
        cost = _priced(entry, Usage(prompt_tokens=tokens))
    elif isinstance(request, RerankRequest):
        documents = rank_texts(request.documents, request.rank_fields)
        tokens = estimate_rerank_tokens(request.query, documents)
        cost = _priced(entry, Usage(prompt_tokens=tokens))
    elif isinstance(request, SpeechRequest):
        cost = entry.character_cost_usd(len(request.input))
    return cost or 0.0


def _answer_tokens(request: GenerateRequest, entry: ModelEntry, prompt: int) -> int:
    if request.max_tokens is not None:
        return request.max_tokens
    if entry.context_tokens is not None:
        return max(entry.context_tokens - prompt, 0)
    return UNBOUNDED_ANSWER_TOKENS


def _priced(entry: ModelEntry, usage: Usage) -> float:
    # Input and output priced apart: a price the catalogue leaves out counts as free, as in
    # the cost metrics, and the other part is still reserved.
    prompt = entry.cost_usd(Usage(prompt_tokens=usage.prompt_tokens))
    answer = entry.cost_usd(Usage(completion_tokens=usage.completion_tokens))
    return (prompt or 0.0) + (answer or 0.0)


def cost_usd(final: FinalReply) -> float | None:
    """What the job that answered ``final`` cost, as its usage says (priced by the worker
    that ran it, at the prices of whoever answered); None when it is no answer to count
    (an error: its hold is only let go)."""
    if isinstance(final, GenerateResult | EmbedResult | RerankResult | SpeechResult):
        return final.usage.cost_usd or 0.0
    return None if isinstance(final, ErrorReply) else 0.0  # the others are not priced
