"""Round trips of every wire type, and clear errors for bad payloads."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from contracts import (
    ChatMessage,
    ContentType,
    ContractError,
    EmbedRequest,
    EmbedResult,
    ErrorCode,
    ErrorReply,
    GenerateRequest,
    GenerateResult,
    ReplyAddress,
    SpeechAudio,
    SpeechRequest,
    SpeechResult,
    SpeechUsage,
    TextDelta,
    TranscribeRequest,
    TranscribeResult,
    TranscriptSegment,
    Usage,
    VectorDeleteRequest,
    VectorMatch,
    VectorQueryRequest,
    VectorRecord,
    VectorResult,
    VectorUpsertRequest,
    decode_chunk,
    decode_request,
    decode_request_head,
    encode,
)
from contracts.schema import json_schema, json_schema_text

ADDRESS = ReplyAddress(topic="fleet.v1.replies.abc", partition=0)

REQUESTS = [
    (
        "generate",
        GenerateRequest(
            request_id="r1",
            tenant="acme",
            reply_to=ADDRESS,
            deadline_ms=1_900_000_000_000,
            model="smollm2-135m-instruct",
            session_id="s-1",
            max_tokens=32,
            temperature=0.0,
            messages=[
                ChatMessage(role="system", content="Be brief."),
                ChatMessage(role="user", content="Hi"),
            ],
        ),
    ),
    ("embed", EmbedRequest(request_id="r2", model="all-minilm-l6-v2", texts=["a", "b"])),
    ("transcribe", TranscribeRequest(request_id="r3", model="tiny.en", audio=b"RIFF\x00\x01")),
    (
        "vectors",
        VectorUpsertRequest(
            request_id="r4",
            collection="docs",
            records=[
                VectorRecord(id="d1", vector=[0.1, 0.2], metadata={"lang": "en", "n": 3}),
                VectorRecord(id="d2", text="hello"),
            ],
        ),
    ),
    ("vectors", VectorDeleteRequest(request_id="r5", collection="docs", ids=["d1"])),
    ("vectors", VectorQueryRequest(request_id="r6", collection="docs", text="hi", top_k=3)),
    (
        "speech",
        SpeechRequest(
            request_id="r8", model="tts-1", input="Hi.", voice="alloy", speed=1.25, instructions="x"
        ),
    ),
]

CHUNKS = [
    TextDelta(request_id="r1", seq=0, text="Hel"),
    GenerateResult(request_id="r1", seq=1, text="Hello", model="m", usage=Usage(input_tokens=3)),
    EmbedResult(request_id="r2", seq=0, model="m", dimension=2, vectors=[[0.5, 0.5]]),
    TranscriptSegment(request_id="r3", seq=0, start_s=0.0, end_s=1.5, text="hello"),
    TranscribeResult(request_id="r3", seq=1, model="tiny.en", text="hello", language="en"),
    SpeechAudio(request_id="r8", seq=0, audio=b"RIFF\xff\x00"),
    SpeechResult(
        request_id="r8",
        seq=1,
        model="tts-1",
        voice="alloy",
        response_format="wav",
        sample_rate=24000,
        audio_bytes=6,
        usage=SpeechUsage(characters=3, audio_s=0.5, cost_usd=0.000045),
    ),
    VectorResult(
        request_id="r6",
        seq=0,
        collection="docs",
        matches=[VectorMatch(id="d1", score=0.9, metadata={"lang": "en"})],
    ),
    ErrorReply(
        request_id="r7",
        attempt=2,
        seq=0,
        code=ErrorCode.RATE_LIMIT,
        message="slow down",
        retryable=True,
    ),
]


@pytest.mark.parametrize(("kind", "request_obj"), REQUESTS)
@pytest.mark.parametrize("content_type", [ContentType.MSGPACK, ContentType.JSON])
def test_request_round_trip(kind: str, request_obj: object, content_type: str) -> None:
    payload = encode(request_obj, content_type)
    assert decode_request(kind, payload) == request_obj  # the encoding is sniffed


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("content_type", [ContentType.MSGPACK, ContentType.JSON])
def test_chunk_round_trip(chunk: object, content_type: str) -> None:
    assert decode_chunk(encode(chunk, content_type), content_type) == chunk


def test_json_from_another_language_is_accepted() -> None:
    payload = json.dumps(
        {
            "kind": "generate",
            "request_id": "js-1",
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
        }
    ).encode()
    request = decode_request("generate", payload)
    assert isinstance(request, GenerateRequest)
    assert request.tenant == "default"
    assert request.messages == [ChatMessage(role="user", content="hi")]


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"logprobs": True}, "unknown field `logprobs`"),
        ({"messages": [{"role": "user", "content": "hi", "audio": {}}]}, "`$.messages[0]`"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]}]},
            "`$.messages[0].content[0]`",
        ),
        ({"reply_to": {"topic": "t", "key": "k"}}, "unknown field `key`"),
    ],
)
def test_a_field_the_contract_does_not_have_is_refused_by_name(
    extra: dict[str, object], where: str
) -> None:
    """Never dropped: the producer learns its field was not honoured (decision 0022)."""
    payload: dict[str, object] = {"kind": "generate", "request_id": "js-1", "model": "m"}
    payload |= {"messages": [{"role": "user", "content": "hi"}], **extra}
    error = _error("generate", json.dumps(payload).encode())
    assert error.reason == "schema"
    assert where in str(error)


def _error(kind: str, payload: bytes, max_bytes: int = 1_000_000) -> ContractError:
    with pytest.raises(ContractError) as info:
        decode_request(kind, payload, max_bytes=max_bytes)
    return info.value


def test_undecodable_bytes_are_named() -> None:
    error = _error("generate", b"\xc1\xff not msgpack")
    assert error.reason == "undecodable"
    assert "not valid msgpack" in str(error)


def test_missing_field_is_named() -> None:
    error = _error("generate", encode({"kind": "generate", "request_id": "x", "model": "m"}))
    assert error.reason == "schema"
    assert "messages" in str(error)


def test_wrong_type_names_the_path() -> None:
    payload = encode(
        {
            "kind": "generate",
            "request_id": "x",
            "model": "m",
            "messages": [{"role": "user", "content": 5}],
        }
    )
    assert "$.messages[0].content" in str(_error("generate", payload))


def test_kind_of_another_topic_is_refused() -> None:
    payload = encode(EmbedRequest(request_id="x", model="m", texts=["a"]))
    error = _error("generate", payload)
    assert "embed" in str(error)
    assert error.reason == "schema"


def test_out_of_range_values_are_refused() -> None:
    payload = encode(
        {
            "kind": "generate",
            "request_id": "x",
            "model": "m",
            "temperature": 9.0,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    assert "temperature" in str(_error("generate", payload))


def test_unsafe_tenant_is_refused() -> None:
    payload = encode(
        {
            "kind": "generate",
            "request_id": "x",
            "model": "m",
            "tenant": "a:b",
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    assert "tenant" in str(_error("generate", payload))


def test_oversized_payload_is_refused_before_decoding() -> None:
    payload = encode(EmbedRequest(request_id="x", model="m", texts=["a" * 2000]))
    error = _error("embed", payload, max_bytes=1000)
    assert error.reason == "oversized"
    assert "limit is 1000 bytes" in str(error)


def test_cross_field_rules() -> None:
    with pytest.raises(msgspec.ValidationError, match="audio"):
        TranscribeRequest(request_id="x", model="m")
    with pytest.raises(msgspec.ValidationError, match="vector"):
        VectorRecord(id="a")
    payload = encode({"kind": "transcribe", "request_id": "x", "model": "m"})
    assert "exactly one of `audio` or `audio_url`" in str(_error("transcribe", payload))


def test_head_of_a_bad_request_still_gives_the_reply_address() -> None:
    payload = encode({"kind": "generate", "request_id": "x", "reply_to": {"topic": "t"}})
    head = decode_request_head(payload)
    assert head is not None
    assert head.request_id == "x"
    assert head.reply_to == ReplyAddress(topic="t")
    assert decode_request_head(b"\xc1") is None


def test_error_codes_and_retryability() -> None:
    retryable = {code for code in ErrorCode if code.retryable}
    assert retryable == {ErrorCode.RATE_LIMIT, ErrorCode.TIMEOUT, ErrorCode.PROVIDER_DOWN}


def test_json_schema_covers_every_topic_and_is_committed() -> None:
    schema = json_schema()
    kinds = {"generate", "embed", "transcribe", "vectors", "rerank", "speech", "replies", "control"}
    batch = {"batch_commands", "batch_status", "batch_input", "batch_output"}
    assert set(schema["properties"]) == kinds | batch
    assert {"GenerateRequest", "RerankRequest", "BatchSubmit", "BatchInfo", "BatchRow"} <= set(
        schema["$defs"]
    )
    committed = Path(__file__).parents[2] / "docs" / "schema" / "fleet.v1.schema.json"
    assert committed.read_text() == json_schema_text(), "regenerate: fleet schema > " + str(
        committed
    )
