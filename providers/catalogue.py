"""The model catalogue: per model, its context window, what it can do and what it costs, from
the ``[[models]]`` entries of the worker's settings (docs/decisions/0018-model-catalogue.md).

An entry names a model as requests name it, and optionally the provider instance it holds
for (a provider's config ``name``); an entry for that provider wins, field by field, over
one for the model alone. A capability the catalogue sets only narrows what the provider
can do: ``tools = true`` on a model of a provider without tools gives it none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated

import msgspec

from contracts.errors import ConfigError
from contracts.usage import Usage

_PER_MILLION = 1_000_000
Price = Annotated[float, msgspec.Meta(ge=0)]


class ModelEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one model is; every field but ``name`` may be left out (None: not said)."""

    name: str
    provider: str | None = None
    context_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    streaming: bool | None = None
    tools: bool | None = None
    vision: bool | None = None
    json_schema: bool | None = None
    # US dollars per million tokens of prompt and of answer (embeddings: input only).
    input_usd_per_mtok: Price | None = None
    output_usd_per_mtok: Price | None = None
    # US dollars per million characters of input (speech: OpenAI prices tts-1 so).
    input_usd_per_mchar: Price | None = None

    def over(self, general: ModelEntry) -> ModelEntry:
        """This entry, with what it leaves unsaid taken from ``general``."""
        said = {
            field: value
            for field, value in msgspec.structs.asdict(self).items()
            if value is not None
        }
        return msgspec.structs.replace(general, **said)

    def cost_usd(self, usage: Usage) -> float | None:
        """What ``usage`` costs at this entry's prices; None when a price it needs is unknown."""
        parts = (
            (usage.prompt_tokens, self.input_usd_per_mtok),
            (usage.completion_tokens, self.output_usd_per_mtok),
        )
        needed = [price for tokens, price in parts if tokens]
        unpriced = self.input_usd_per_mtok is None and self.output_usd_per_mtok is None
        if unpriced or None in needed:
            return None
        dollars = sum(tokens * (price or 0.0) for tokens, price in parts) / _PER_MILLION
        return round(dollars, 12)

    def character_cost_usd(self, characters: int) -> float | None:
        """What ``characters`` of input cost at this entry's price; None when it has none."""
        if self.input_usd_per_mchar is None:
            return None
        return round(characters * self.input_usd_per_mchar / _PER_MILLION, 12)


class ModelCatalogue:
    def __init__(self, entries: Sequence[ModelEntry] = ()) -> None:
        self._entries: dict[tuple[str | None, str], ModelEntry] = {}
        for entry in entries:
            key = (entry.provider, entry.name)
            if key in self._entries:
                where = f" for provider {entry.provider!r}" if entry.provider else ""
                raise ConfigError(f"`models`: model {entry.name!r}{where} is listed twice")
            self._entries[key] = entry

    def __repr__(self) -> str:
        return f"ModelCatalogue({len(self._entries)} entries)"

    @property
    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def entry(self, provider: str, model: str) -> ModelEntry | None:
        """What the catalogue says of ``model`` served by ``provider``."""
        general = self._entries.get((None, model))
        specific = self._entries.get((provider, model))
        if specific is None:
            return general
        return specific if general is None else specific.over(general)

    def for_provider(self, provider: str, models: Iterable[str]) -> dict[str, ModelEntry]:
        """The entries of the models ``provider`` serves, by model name."""
        found = {model: self.entry(provider, model) for model in models}
        return {model: entry for model, entry in found.items() if entry is not None}

    def character_cost_usd(self, provider: str, model: str, characters: int) -> float | None:
        """What ``characters`` of input cost ``model`` served by ``provider``; None when the
        catalogue has no price per character for it."""
        entry = self.entry(provider, model)
        return entry.character_cost_usd(characters) if entry is not None else None

    def dearest(self, model: str) -> ModelEntry | None:
        """``model`` at the highest of each price that any entry for it says (the general
        one, or one per provider): the most a job for it can cost, whoever answers it."""
        said = [self.entry(provider or "", name) for provider, name in self._entries]
        found = [entry for entry in said if entry is not None and entry.name == model]
        if not found:
            return None
        prices = {
            field: max((p for e in found if (p := getattr(e, field)) is not None), default=None)
            for field in _PRICES
        }
        return msgspec.structs.replace(found[0], **prices)

    def priced(self, provider: str, model: str, usage: Usage) -> Usage:
        """``usage`` with its cost, when the catalogue knows the model's prices."""
        entry = self.entry(provider, model)
        cost = entry.cost_usd(usage) if entry is not None else None
        if cost is None:
            return usage
        return msgspec.structs.replace(usage, cost_usd=cost)


_PRICES = ("input_usd_per_mtok", "output_usd_per_mtok", "input_usd_per_mchar")
NO_MODELS = ModelCatalogue()
