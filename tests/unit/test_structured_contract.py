"""The generate contract's structured output (response_format) and content parts (text and
images), as OpenAI's chat-completions API spells them."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contracts import (
    ChatMessage,
    ContentType,
    GenerateRequest,
    ImagePart,
    ImageUrl,
    JsonSchemaSpec,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    ResponseFormatText,
    TextPart,
    decode_request,
    encode,
)
from contracts.content import data_url_parts, images_in, text_of
from contracts.response_format import json_format, type_name
from tests.unit.generate_payloads import generate_json, schema_refusal

PNG = "data:image/png;base64,iVBORw0KGgo="
PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}

SHAPED = GenerateRequest(
    request_id="r1",
    model="gpt-4o-mini",
    messages=[
        ChatMessage(role="system", content=[TextPart(text="Answer in JSON.")]),
        ChatMessage(
            role="user",
            content=[
                TextPart(text="Who is in the picture?"),
                ImagePart(image_url=ImageUrl(url=PNG, detail="low")),
                ImagePart(image_url=ImageUrl(url="https://example.com/ada.jpg")),
            ],
        ),
    ],
    response_format=ResponseFormatJsonSchema(
        json_schema=JsonSchemaSpec(name="person", schema=PERSON, strict=True)
    ),
)


@pytest.mark.parametrize("content_type", [ContentType.MSGPACK, ContentType.JSON])
def test_a_request_with_parts_and_a_schema_round_trips(content_type: str) -> None:
    assert decode_request("generate", encode(SHAPED, content_type)) == SHAPED


def test_an_openai_request_body_decodes_as_it_is() -> None:
    """The messages and response_format of a chat-completions body, copied verbatim."""
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}},
            ],
        }
    ]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    request = decode_request(
        "generate", generate_json(messages=messages, response_format=response_format)
    )
    assert isinstance(request, GenerateRequest)
    assert images_in(request.messages[0].content) == [ImageUrl(url=PNG, detail="high")]
    assert text_of(request.messages[0].content) == "What is in this image?"
    assert request.response_format == ResponseFormatJsonSchema(
        json_schema=JsonSchemaSpec(name="person", schema=PERSON, strict=True)
    )


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ({"type": "text"}, ResponseFormatText()),
        ({"type": "json_object"}, ResponseFormatJsonObject()),
        (
            {"type": "json_schema", "json_schema": {"name": "any"}},
            ResponseFormatJsonSchema(json_schema=JsonSchemaSpec(name="any")),
        ),
    ],
)
def test_every_response_format_type_decodes(wire: dict[str, Any], expected: object) -> None:
    request = decode_request("generate", generate_json(response_format=wire))
    assert isinstance(request, GenerateRequest)
    assert request.response_format == expected
    assert type_name(expected) == wire["type"]  # type: ignore[arg-type]
    assert (json_format(request.response_format) is None) == (wire["type"] == "text")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "has space"}}},
            "$.response_format.json_schema.name",
        ),
        ({"messages": [{"role": "user", "content": []}]}, "$.messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]},
            "$.messages[0].content",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}
                        ],
                    }
                ]
            },
            "$.messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "content": [{"type": "image_url", "image_url": {"url": PNG}}],
                    },
                ]
            },
            "images go in user messages",
        ),
    ],
)
def test_malformed_formats_and_parts_are_refused(fields: dict[str, Any], reason: str) -> None:
    assert reason in schema_refusal(generate_json(**fields))


def test_a_data_url_splits_into_media_type_and_data() -> None:
    assert data_url_parts(PNG) == ("image/png", "iVBORw0KGgo=")
    assert data_url_parts("https://example.com/a.png") is None


def test_plain_string_content_is_unchanged_on_the_wire() -> None:
    message = ChatMessage(role="user", content="hi")
    assert msgspec.json.decode(encode(message, ContentType.JSON))["content"] == "hi"
    assert text_of(message.content) == "hi"
    assert images_in(message.content) == []
