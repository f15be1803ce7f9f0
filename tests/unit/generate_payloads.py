"""Generate requests as a producer in another language writes them (JSON), and what the
decoder says when it refuses one: shared by the contract tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.codec import decode_request
from contracts.errors import ContractError


def generate_json(**fields: Any) -> bytes:
    """A minimal JSON generate request with ``fields`` set or replaced."""
    body = {
        "kind": "generate",
        "request_id": "x",
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }
    return json.dumps(body).encode()


def schema_refusal(payload: bytes) -> str:
    """The decoder's refusal of ``payload`` (it must be a schema error), in words."""
    with pytest.raises(ContractError) as info:
        decode_request("generate", payload)
    assert info.value.reason == "schema"
    return str(info.value)
