"""Token accounting shared by the reply kinds, in OpenAI's names."""

from __future__ import annotations

from typing import Annotated

import msgspec


def _deprecated(new_name: str) -> msgspec.Meta:
    return msgspec.Meta(
        description=f"Deprecated (removed in schema version 2): the same value as {new_name}.",
        extra_json_schema={"deprecated": True},
    )


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Either set of names may be given (the other is filled in): replies from workers of
    earlier releases carry only ``input_tokens`` and ``output_tokens``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0  # prompt + completion when not given
    # Of the prompt tokens, those the provider served from its prompt cache (when it says).
    cached_tokens: int | None = None
    # Of the completion tokens, those spent on hidden reasoning (when the provider says).
    reasoning_tokens: int | None = None
    # True when the provider reported no counts and the worker made them: with the model's
    # tokenizer where it has one, otherwise estimated from the text (about 4 characters a token).
    estimated: bool = False
    # What the call cost at the prices of the worker's model catalogue
    # (docs/decisions/0018-model-catalogue.md); None when the model has no price there.
    cost_usd: Annotated[float, msgspec.Meta(ge=0)] | None = None
    input_tokens: Annotated[int, _deprecated("prompt_tokens")] = 0
    output_tokens: Annotated[int, _deprecated("completion_tokens")] = 0

    def __post_init__(self) -> None:
        prompt = self.prompt_tokens or self.input_tokens
        completion = self.completion_tokens or self.output_tokens
        for field, value in (
            ("prompt_tokens", prompt),
            ("input_tokens", prompt),
            ("completion_tokens", completion),
            ("output_tokens", completion),
            ("total_tokens", self.total_tokens or prompt + completion),
        ):
            msgspec.structs.force_setattr(self, field, value)
