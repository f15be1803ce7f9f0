"""Structured output: the shape a generate answer must have, as OpenAI's chat-completions
API spells ``response_format`` (docs/decisions/0019-structured-output-and-content-parts.md)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from contracts.strict import StrictStruct

# OpenAI's rule for a schema's name (the same as a tool's).
SchemaName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]


class ResponseFormatText(StrictStruct, frozen=True, tag_field="type", tag="text"):
    """Free text: the same as no response_format."""


class ResponseFormatJsonObject(StrictStruct, frozen=True, tag_field="type", tag="json_object"):
    """Any JSON object."""


class JsonSchemaSpec(StrictStruct, frozen=True):
    name: SchemaName
    description: str | None = None
    # A JSON Schema (draft 2020-12 unless it names another in "$schema"); empty: any JSON.
    schema: dict[str, Any] = msgspec.field(default_factory=dict)
    # Passed to providers that have it (OpenAI); the worker checks the answer either way.
    strict: bool | None = None


class ResponseFormatJsonSchema(StrictStruct, frozen=True, tag_field="type", tag="json_schema"):
    """JSON that matches ``json_schema.schema``."""

    json_schema: JsonSchemaSpec


ResponseFormat = ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema
# The formats that ask for JSON (a provider must declare json_schema to take them).
JsonResponseFormat = ResponseFormatJsonObject | ResponseFormatJsonSchema


def json_format(response_format: ResponseFormat | None) -> JsonResponseFormat | None:
    """The JSON format asked for, or None for free text."""
    if isinstance(response_format, ResponseFormatJsonObject | ResponseFormatJsonSchema):
        return response_format
    return None


def type_name(response_format: ResponseFormat) -> str:
    """The format's ``type`` on the wire: "text", "json_object" or "json_schema"."""
    return str(response_format.__struct_config__.tag)
