"""The AsyncAPI document is generated from the contracts, committed, and valid AsyncAPI 3.0
(checked against the specification's own JSON Schema, from npm @asyncapi/specs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contracts import JOB_KINDS, Header
from contracts.asyncapi import asyncapi_document, asyncapi_text
from contracts.names import (
    batch_command_topic,
    batch_input_topic,
    batch_output_topic,
    batch_request_topic,
    batch_status_topic,
    control_topic,
    dead_letter_topic,
    request_topic,
)
from tests.conftest import REPO

COMMITTED = REPO / "docs" / "asyncapi.json"


def _validator(manifest_tools: dict[str, str]) -> jsonschema.Draft7Validator:
    schema = json.loads(Path(manifest_tools["ASYNCAPI_SCHEMA"]).read_text())
    return jsonschema.Draft7Validator(schema)


def test_the_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == asyncapi_text(), (
        "regenerate it: fleet asyncapi > docs/asyncapi.json"
    )


def test_the_document_is_valid_asyncapi_3(manifest_tools: dict[str, str]) -> None:
    errors = [e.message for e in _validator(manifest_tools).iter_errors(asyncapi_document())]
    assert errors == []


def test_the_specification_schema_does_reject_a_broken_document(
    manifest_tools: dict[str, str],
) -> None:
    """msgspec's discriminator is OpenAPI's object; AsyncAPI wants the property's name."""
    broken: dict[str, Any] = asyncapi_document()
    broken["components"]["schemas"]["ReplyChunk"]["discriminator"] = {"propertyName": "kind"}
    assert not _validator(manifest_tools).is_valid(broken)


def test_every_topic_and_header_a_producer_meets_is_described() -> None:
    text = asyncapi_text()
    topics = [
        f(kind)
        for kind in JOB_KINDS
        for f in (request_topic, batch_request_topic, control_topic, dead_letter_topic)
    ]
    headers = [
        Header.CONTENT_TYPE,
        Header.REQUEST_ID,
        Header.TENANT_SIGNATURE,
        Header.TRACEPARENT,
        Header.REPLY_CLIENT,
        Header.HEARTBEAT,
        Header.DLQ_REASON,
    ]
    missing = [name for name in [*topics, *headers] if f'"{name}' not in text]
    assert missing == []


def test_the_batch_topics_and_their_records_are_described() -> None:
    document = asyncapi_document()
    addresses = {c["address"] for c in document["channels"].values()}
    batch_topics = [batch_command_topic(), batch_status_topic()]
    batch_topics += [batch_input_topic("{batchId}"), batch_output_topic("{batchId}")]
    assert set(batch_topics) <= addresses
    schemas = document["components"]["schemas"]
    for name in ("batchCommands", "batchStatus", "batchInput", "batchOutput"):
        message = document["components"]["messages"][name]
        assert message["contentType"] == "application/msgpack"
        assert message["payload"]["$ref"].rsplit("/", 1)[1] in schemas
    commands = schemas["BatchCommandsRecords"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in commands["anyOf"]} == {
        "BatchSubmit",
        "BatchCancel",
        "BatchRetry",
    }


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_each_request_message_names_its_payload_and_key(kind: str) -> None:
    document = asyncapi_document()
    message = document["components"]["messages"][f"{kind}Request"]
    payload = message["payload"]["$ref"].rsplit("/", 1)[1]
    assert payload in document["components"]["schemas"]
    assert message["bindings"]["kafka"]["key"]["type"] == "string"
