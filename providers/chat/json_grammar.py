"""response_format as a GBNF grammar for llama.cpp's grammar sampler: json_schema through
llama.cpp's own converter (examples/json_schema_to_grammar.py, which cyllama ships as
``cyllama.utils.json_schema_to_grammar``), json_object as the converter's grammar for any
object."""

from __future__ import annotations

import re
from typing import Any, Final

from contracts.errors import ErrorCode
from contracts.response_format import JsonResponseFormat, ResponseFormatJsonSchema
from providers.errors import ProviderError

ROOT: Final = "root"
# Whitespace between tokens: one space at most. The converter's own rule allows two
# newlines and 20 tabs at every gap, which a small model fills after the closing brace
# (the grammar is complete there, but whitespace is still allowed) until max_tokens.
_SPACE_RULE: Final = 'space ::= " "?'
_SPACE_LINE: Final = re.compile(r"^space ::= .*$", re.MULTILINE)
_ANY_OBJECT: Final[dict[str, Any]] = {"type": "object"}


def json_grammar(response_format: JsonResponseFormat, *, op: str) -> str:
    """The grammar of the answers ``response_format`` allows (its root rule is ``root``);
    invalid_input for a schema the converter cannot express."""
    from cyllama.utils.json_schema_to_grammar import json_schema_to_grammar  # with the engine

    if isinstance(response_format, ResponseFormatJsonSchema):
        spec = response_format.json_schema
        # An empty schema (any JSON) becomes the converter's grammar for any object.
        schema, what = spec.schema, f"the schema {spec.name!r}"
    else:
        schema, what = _ANY_OBJECT, "json_object"
    try:
        grammar = str(json_schema_to_grammar(schema))
    except Exception as exc:  # whatever the caller's schema provokes is the schema's fault
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"{what} cannot be turned into a grammar for constrained decoding: "
            f"{type(exc).__name__}: {exc}",
        ) from exc
    return _SPACE_LINE.sub(_SPACE_RULE, grammar, count=1)
