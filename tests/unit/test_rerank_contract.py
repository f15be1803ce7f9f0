"""The rerank request on the wire: documents as strings or objects with rank fields, and
what the contract refuses, named."""

from __future__ import annotations

import pytest

from contracts import ContractError, RerankRequest, decode_request, encode
from contracts.errors import ContractViolation
from contracts.rerank import rank_texts


def wire(**fields: object) -> bytes:
    return encode({"kind": "rerank", "request_id": "r1", "model": "m", "query": "q", **fields})


def test_strings_and_objects_round_trip_and_rank_their_fields() -> None:
    documents: list[str | dict[str, str]] = [
        "plain",
        {"text": "only text", "id": "7"},
    ]
    request = decode_request("rerank", wire(documents=documents, top_n=1))
    assert isinstance(request, RerankRequest)
    assert request.documents == documents
    assert rank_texts(request.documents, request.rank_fields) == ["plain", "only text"]
    titled = decode_request(
        "rerank",
        wire(documents=[{"title": "T", "body": "B"}], rank_fields=["title", "body"]),
    )
    assert isinstance(titled, RerankRequest)
    assert rank_texts(titled.documents, titled.rank_fields) == ["title: T\nbody: B"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"documents": []}, "length >= 1"),
        ({"documents": [{"title": "no text"}]}, "no field 'text'"),
        ({"documents": [{"text": "x"}], "rank_fields": ["title"]}, "no field 'title'"),
        ({"documents": ["x"], "top_n": 0}, "top_n"),
        ({"documents": ["x"], "max_tokens_per_doc": 0}, "max_tokens_per_doc"),
        ({"documents": [["nested"]]}, "documents"),
    ],
)
def test_what_the_contract_refuses_is_named(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ContractError) as info:
        decode_request("rerank", wire(**fields))
    assert info.value.reason is ContractViolation.SCHEMA
    assert named in str(info.value)
