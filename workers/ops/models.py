"""``fleet models``: what the fleet serves, read from the worker settings: per provider and
model, its context window, what it can do and its prices, as the model catalogue says them.
Providers are created to be asked (nothing is loaded, called or rate limited)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import msgspec

from providers.catalogue import ModelCatalogue, ModelEntry
from providers.chat import ChatProvider, chat_providers
from providers.chat.catalogued import with_catalogue
from providers.chat.fallback import FallbackChat
from providers.embeddings import embedding_providers
from providers.rerank import rerank_providers
from providers.shared import Shared
from providers.speech import speech_providers
from providers.transcription import transcription_providers
from workers.settings import ProviderSpec, WorkerSettings


class ServedModel(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    kind: str  # the job kind: generate, embed, transcribe, rerank, speech
    provider: str
    model: str
    # Through a fallback chain: the link that serves it, and the model it runs when that
    # model stands in for the one asked for.
    via: str | None = None
    runs: str | None = None
    context_tokens: int | None = None
    streaming: bool | None = None
    tools: bool | None = None
    vision: bool | None = None
    json_schema: bool | None = None
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    input_usd_per_mchar: float | None = None  # speech: per million characters of input


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    models: list[ServedModel]
    # `[[models]]` entries no configured provider serves (a misspelt name, most often).
    unused_entries: list[ModelEntry]


async def list_models(settings: WorkerSettings) -> Listing:
    catalogue = settings.model_catalogue()
    shared = Shared(models=catalogue)
    rows: list[ServedModel] = []
    async with contextlib.AsyncExitStack() as opened:
        for spec in settings.chat:
            chat = with_catalogue(_create_chat(spec, shared), catalogue)
            opened.push_async_callback(chat.aclose)
            rows.extend(_chat_rows(chat, catalogue))
        for spec in settings.embeddings:
            embedder = embedding_providers.create(spec.name, spec.config, shared)
            opened.push_async_callback(embedder.aclose)
            for model in embedder.capabilities.models:
                rows.append(
                    _priced(
                        ServedModel(
                            kind="embed",
                            provider=embedder.name,
                            model=model,
                            context_tokens=embedder.capabilities.max_input_tokens,
                        ),
                        catalogue.entry(embedder.name, model),
                    )
                )
        for spec in settings.rerank:
            reranker = rerank_providers.create(spec.name, spec.config, shared)
            opened.push_async_callback(reranker.aclose)
            rows.extend(
                _priced(
                    ServedModel(kind="rerank", provider=reranker.name, model=model),
                    catalogue.entry(reranker.name, model),
                )
                for model in reranker.capabilities.models
            )
        for spec in settings.transcription:
            transcriber = transcription_providers.create(spec.name, spec.config, shared)
            opened.push_async_callback(transcriber.aclose)
            rows.extend(
                ServedModel(kind="transcribe", provider=transcriber.name, model=model)
                for model in transcriber.capabilities.models
            )
        for spec in settings.speech:
            voice = speech_providers.create(spec.name, spec.config, shared)
            opened.push_async_callback(voice.aclose)
            rows.extend(
                _priced(
                    ServedModel(kind="speech", provider=voice.name, model=model),
                    catalogue.entry(voice.name, model),
                )
                for model in voice.capabilities.models
            )
    return Listing(models=rows, unused_entries=_unused(catalogue, rows))


def _create_chat(spec: ProviderSpec, shared: Shared) -> ChatProvider:
    return chat_providers.create(spec.name, spec.config, shared)


def _chat_rows(chat: ChatProvider, catalogue: ModelCatalogue) -> Iterator[ServedModel]:
    for model in chat.capabilities.models:
        if isinstance(chat, FallbackChat):
            for link, runs in chat.links_for(model):
                yield _chat_row(chat.name, model, link, runs, catalogue)
        else:
            yield _chat_row(chat.name, model, chat, model, catalogue)


def _chat_row(
    name: str, model: str, provider: ChatProvider, runs: str, catalogue: ModelCatalogue
) -> ServedModel:
    caps = provider.capabilities.for_model(runs)
    row = ServedModel(
        kind="generate",
        provider=name,
        model=model,
        via=provider.name if provider.name != name else None,
        runs=runs if runs != model else None,
        context_tokens=caps.max_context_tokens,
        streaming=caps.streaming,
        tools=caps.tools,
        vision=caps.vision,
        json_schema=caps.json_schema,
    )
    return _priced(row, catalogue.entry(provider.name, runs))


def _priced(row: ServedModel, entry: ModelEntry | None) -> ServedModel:
    if entry is None:
        return row
    return msgspec.structs.replace(
        row,
        input_usd_per_mtok=entry.input_usd_per_mtok,
        output_usd_per_mtok=entry.output_usd_per_mtok,
        input_usd_per_mchar=entry.input_usd_per_mchar,
    )


def _unused(catalogue: ModelCatalogue, rows: Iterable[ServedModel]) -> list[ModelEntry]:
    served = {(row.via or row.provider, row.runs or row.model) for row in rows}
    models = {model for _, model in served}
    return [
        entry
        for entry in catalogue.entries
        if (entry.provider is None and entry.name not in models)
        or (entry.provider is not None and (entry.provider, entry.name) not in served)
    ]


def render(listing: Listing) -> str:
    """The listing as a table for people."""
    header = ("KIND", "PROVIDER", "MODEL", "CONTEXT", "CAN", "$/M IN", "$/M OUT")
    table = [header]
    for row in listing.models:
        provider = f"{row.provider} > {row.via}" if row.via else row.provider
        model = f"{row.model} (runs {row.runs})" if row.runs else row.model
        table.append(
            (
                row.kind,
                provider,
                model,
                "" if row.context_tokens is None else str(row.context_tokens),
                _abilities(row),
                _input_price(row),
                _price(row.output_usd_per_mtok),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    for entry in listing.unused_entries:
        where = f" for provider {entry.provider!r}" if entry.provider else ""
        lines.append(f"warning: `[[models]]` entry {entry.name!r}{where} matches no served model")
    return "\n".join(lines)


def _abilities(row: ServedModel) -> str:
    names = ("streaming", "tools", "vision", "json_schema")
    return ",".join(name for name in names if getattr(row, name))


def _input_price(row: ServedModel) -> str:
    """Tokens' price as it is; characters' (speech) marked as such."""
    if row.input_usd_per_mchar is not None:
        return f"{row.input_usd_per_mchar:g}/char"
    return _price(row.input_usd_per_mtok)


def _price(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
