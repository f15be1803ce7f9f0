"""The worker's check of structured answers (workers/handlers/structured_output.py)."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from contracts import (
    ErrorCode,
    JsonSchemaSpec,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    ResponseFormatText,
)
from providers.errors import ProviderError
from workers.handlers.structured_output import OutputCheck, output_check

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def _check(schema: dict[str, Any]) -> OutputCheck:
    check = output_check(
        ResponseFormatJsonSchema(json_schema=JsonSchemaSpec(name="person", schema=schema))
    )
    assert check is not None
    return check


def _refusal(check: OutputCheck, text: str, finish_reason: str = "stop") -> ProviderError:
    with pytest.raises(ProviderError) as info:
        check.verify(text, finish_reason)
    assert not info.value.retryable
    return info.value


def test_free_text_is_not_checked() -> None:
    assert output_check(None) is None
    assert output_check(ResponseFormatText()) is None


def test_an_answer_of_the_schema_passes() -> None:
    _check(PERSON).verify('{"name": "Ada", "age": 36}', "stop")
    _check({}).verify("[1, 2]", "stop")  # an empty schema: any JSON


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"name": "Ada", "age": "36"}', "at $.age: '36' is not of type 'integer'"),
        ('{"name": "Ada", "age": -1}', "at $.age: -1 is less than the minimum of 0"),
        ('{"name": "Ada"}', "'age' is a required property"),
        ('{"name": "Ada", "age": 3, "x": 1}', "Additional properties are not allowed"),
        ("Ada is 36.", "the answer is not JSON"),
        ("", "the answer is not JSON"),
    ],
)
def test_an_answer_against_the_schema_is_output_invalid(text: str, says: str) -> None:
    error = _refusal(_check(PERSON), text)
    assert error.code is ErrorCode.OUTPUT_INVALID
    assert says in error.detail
    assert "'person'" in error.detail or "not JSON" in error.detail


def test_a_cut_off_answer_says_so() -> None:
    error = _refusal(_check(PERSON), '{"name": "Ada", "ag', "length")
    assert error.code is ErrorCode.OUTPUT_INVALID
    assert "cut off at max_tokens" in error.detail
    assert 'the answer began: \'{"name": "Ada", "ag\'' in error.detail


def test_json_object_wants_an_object() -> None:
    check = output_check(ResponseFormatJsonObject())
    assert check is not None
    check.verify('{"any": ["thing"]}', "stop")
    error = _refusal(check, "[1, 2]")
    assert error.code is ErrorCode.OUTPUT_INVALID
    assert "not a JSON object" in error.detail


def test_a_schema_that_is_not_one_is_invalid_input_before_any_answer() -> None:
    with pytest.raises(ProviderError) as info:
        _check({"type": "person"})
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "is not a valid JSON Schema: at $.type" in info.value.detail


def test_references_are_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[object] = []

    def fetch(*args: object, **kwargs: object) -> None:
        fetched.append(args)  # jsonschema's default registry would fetch here
        raise OSError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", fetch)
    check = _check({"$ref": "http://169.254.169.254/latest/meta-data"})
    error = _refusal(check, "{}")
    assert fetched == []
    assert error.code is ErrorCode.INVALID_INPUT
    assert "references are never fetched" in error.detail


def test_a_long_answer_is_quoted_clipped() -> None:
    error = _refusal(_check(PERSON), "x" * 5000)
    assert len(error.detail) < 1000
