"""Embed requests."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.envelope import Request


class EmbedRequest(Request, frozen=True, kw_only=True, tag="embed"):
    model: str
    texts: Annotated[list[str], msgspec.Meta(min_length=1)]
    provider: str | None = None
    # Row ids for batch jobs, returned beside each vector (OpenAI Batch's custom_id).
    custom_ids: list[str] | None = None
    normalize: bool = True
