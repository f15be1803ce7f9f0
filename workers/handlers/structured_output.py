"""The worker's check of a structured answer: whatever the provider did to honour
response_format (a grammar, the API's own mode, a forced tool), the final text must be JSON
of the shape asked for, or the job fails with output_invalid
(docs/decisions/0019-structured-output-and-content-parts.md)."""

from __future__ import annotations

from typing import Any, Final

import jsonschema
import msgspec
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.exceptions import Unresolvable

from contracts.errors import ErrorCode
from contracts.response_format import (
    ResponseFormat,
    ResponseFormatJsonSchema,
    json_format,
)
from providers.errors import ProviderError

OP: Final = "generate.response_format"
_CLIP: Final = 300  # characters of an answer or a validator message quoted back


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else text[:_CLIP] + "..."


class OutputCheck:
    """What the final text of one request must be; built before the model is called, so a
    schema that is not a JSON Schema is refused (invalid_input) without a call."""

    def __init__(self, response_format: ResponseFormatJsonSchema | None) -> None:
        # None: any JSON object (json_object).
        self._name: str | None = None
        self._validator: Validator | None = None
        if response_format is not None:
            spec = response_format.json_schema
            self._name = spec.name
            self._validator = _validator(spec.schema, spec.name)

    def verify(self, text: str, finish_reason: str) -> None:
        """Return when ``text`` is what was asked for; raise output_invalid otherwise."""
        what = "a JSON object" if self._name is None else f"JSON of the schema {self._name!r}"
        try:
            answer: Any = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise self._invalid(f"the answer is not JSON ({exc})", text, finish_reason) from None
        if self._validator is None:
            if not isinstance(answer, dict):
                raise self._invalid(f"the answer is JSON but not {what}", text, finish_reason)
            return
        try:
            error = best_match(self._validator.iter_errors(answer))
        except Unresolvable as exc:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                OP,
                f"response_format's schema {self._name!r} has a reference that does not "
                f"resolve within it ({exc}); references are never fetched",
            ) from None
        if error is not None:
            reason = f"the answer does not match {what}: at {error.json_path}: {error.message}"
            raise self._invalid(_clip(reason), text, finish_reason)

    def _invalid(self, reason: str, text: str, finish_reason: str) -> ProviderError:
        if finish_reason == "length":
            reason += "; it was cut off at max_tokens: allow more tokens"
        elif finish_reason != "stop":
            reason += f"; the model stopped with finish_reason {finish_reason!r}"
        return ProviderError(
            ErrorCode.OUTPUT_INVALID, OP, f"{reason} (the answer began: {_clip(text)!r})"
        )


def _validator(schema: dict[str, Any], name: str) -> Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            OP,
            f"response_format's schema {name!r} is not a valid JSON Schema: at "
            f"{exc.json_path}: {_clip(exc.message)}",
        ) from None
    # References resolve within the schema (and to the meta-schemas) only. Without a registry
    # of its own, jsonschema would fetch any http(s) "$ref" from wherever the caller points.
    return cls(schema, registry=Registry())


def output_check(response_format: ResponseFormat | None) -> OutputCheck | None:
    """The check for a request's response_format; None for free text."""
    wanted = json_format(response_format)
    if wanted is None:
        return None
    return OutputCheck(wanted if isinstance(wanted, ResponseFormatJsonSchema) else None)
