"""JSON Schema of the wire contract, generated from the Structs (never written by hand)."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.batch import BatchCommand, BatchInfo, BatchInputPage, BatchResults
from contracts.codec import TOPIC_REQUEST_TYPES
from contracts.control import ControlMessage
from contracts.names import SCHEMA_VERSION
from contracts.replies import ReplyChunk

# The records of the batch topics (docs/decisions/0020-batch-jobs.md), by topic.
BATCH_RECORDS: dict[str, Any] = {
    "batch_commands": BatchCommand,
    "batch_status": BatchInfo,
    "batch_input": BatchInputPage,
    "batch_output": BatchResults,
}


def json_schema() -> dict[str, Any]:
    """One document: a definition per request topic and one for reply chunks."""
    names = [*TOPIC_REQUEST_TYPES, "replies", "control", *BATCH_RECORDS]
    types: list[Any] = [
        *TOPIC_REQUEST_TYPES.values(), ReplyChunk, ControlMessage, *BATCH_RECORDS.values(),
    ]  # fmt: skip
    roots, components = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"AI job fleet wire contract v{SCHEMA_VERSION}",
        "description": "Requests per topic (fleet.v1.<kind>.requests and .batch-requests), "
        "reply chunks, control messages, and the batch topics' records (fleet.v1.batch.*).",
        "properties": dict(zip(names, roots, strict=True)),
        "$defs": components,
    }


def json_schema_text() -> str:
    return msgspec.json.format(msgspec.json.encode(json_schema()), indent=2).decode() + "\n"
