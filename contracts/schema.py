"""JSON Schema of the wire contract, generated from the Structs (never written by hand)."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.codec import TOPIC_REQUEST_TYPES
from contracts.control import ControlMessage
from contracts.names import SCHEMA_VERSION
from contracts.replies import ReplyChunk


def json_schema() -> dict[str, Any]:
    """One document: a definition per request topic and one for reply chunks."""
    names = [*TOPIC_REQUEST_TYPES, "replies", "control"]
    types: list[Any] = [*TOPIC_REQUEST_TYPES.values(), ReplyChunk, ControlMessage]
    roots, components = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"AI job fleet wire contract v{SCHEMA_VERSION}",
        "description": "Requests per topic (fleet.v1.<kind>.requests) and reply chunks.",
        "properties": dict(zip(names, roots, strict=True)),
        "$defs": components,
    }


def json_schema_text() -> str:
    return msgspec.json.format(msgspec.json.encode(json_schema()), indent=2).decode() + "\n"
