"""The pure parts of `fleet dlq`: what a replay remembers per partition, which dead letters
a filter selects, durations, and what a replayed record keeps of its headers."""

from __future__ import annotations

import argparse
import time

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord

from contracts import (
    EmbedRequest,
    RerankRequest,
    SpeechRequest,
    TranscribeRequest,
    VectorRecord,
    VectorUpsertRequest,
)
from contracts.codec import encode
from contracts.envelope import Request
from contracts.generate import ChatMessage, GenerateRequest
from contracts.names import JOB_KINDS, Header, control_topic, request_topic
from workers.ops.dead_letter_replay import refusal, replay_headers
from workers.ops.dead_letters import DeadLetter, DeadLetterFilter, parse_dead_letter, parse_duration
from workers.ops.replay_progress import MAX_METADATA_CHARS, PartitionProgress


def _record(
    value: bytes, headers: list[tuple[str, bytes]], offset: int = 7, kind: str = "generate"
) -> DeadLetter:
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=f"fleet.v1.{kind}.dead-letter", partition=0, offset=offset,
        timestamp=int(time.time() * 1000), timestamp_type=0, key=b"r-1", value=value,
        checksum=None, serialized_key_size=3, serialized_value_size=len(value),
        headers=headers,
    )  # fmt: skip
    return parse_dead_letter(kind, record)


# A request of each kind, "r-1" of tenant "acme".
REQUESTS: dict[str, Request] = {
    "generate": GenerateRequest(
        request_id="r-1",
        tenant="acme",
        model="m",
        messages=[ChatMessage(role="user", content="hi")],
    ),
    "embed": EmbedRequest(request_id="r-1", tenant="acme", model="m", texts=["hi"]),
    "transcribe": TranscribeRequest(request_id="r-1", tenant="acme", model="m", audio=b"RIFF"),
    "vectors": VectorUpsertRequest(
        request_id="r-1", tenant="acme", collection="c", records=[VectorRecord(id="1", vector=[1])]
    ),
    "rerank": RerankRequest(request_id="r-1", tenant="acme", model="m", query="q", documents=["d"]),
    "speech": SpeechRequest(request_id="r-1", tenant="acme", model="m", input="hi", voice="v"),
}


def _request(deadline_ms: int | None = None, kind: str = "generate") -> bytes:
    return encode(msgspec.structs.replace(REQUESTS[kind], deadline_ms=deadline_ms))


def test_the_committed_offset_stops_at_the_first_record_not_dealt_with() -> None:
    progress = PartitionProgress()
    for offset in (0, 1, 3, 4, 6):
        progress.mark(offset)
    assert progress.committed == 2
    assert [progress.dealt_with(o) for o in range(8)] == [
        True, True, False, True, True, False, True, False
    ]  # fmt: skip
    again = PartitionProgress.from_commit(progress.committed, progress.metadata())
    assert (again.committed, again.beyond) == (2, {3, 4, 6})
    again.mark(2)
    again.mark(5)
    assert (again.committed, again.beyond, again.metadata()) == (7, set(), "")


def test_progress_survives_foreign_metadata_and_retention() -> None:
    assert PartitionProgress.from_commit(-1, "").committed == 0  # the group never committed
    assert PartitionProgress.from_commit(5, "not ours").beyond == set()
    progress = PartitionProgress(0, {10, 12})
    progress.skip_to(11)  # retention deleted offsets 0-10
    assert (progress.committed, progress.beyond) == (11, {12})


def test_a_long_gapped_list_of_offsets_is_over_what_a_commit_holds() -> None:
    progress = PartitionProgress(0, set(range(1, 4000, 2)))
    assert len(progress.metadata()) > MAX_METADATA_CHARS


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "15m", "2h", "7d", "1w", "1.5h")] == [
        90, 90, 900, 7200, 604800, 604800, 5400
    ]  # fmt: skip
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        parse_duration("3 fortnights")


def test_a_filter_selects_by_reason_request_id_and_time() -> None:
    letter = _record(_request(), [(Header.DLQ_REASON, b"handler_failed")]).info
    assert DeadLetterFilter().selects(letter)
    assert DeadLetterFilter.of(["handler_failed"], ["r-1"], since_s=60).selects(letter)
    assert not DeadLetterFilter.of(["retries_exhausted"]).selects(letter)
    assert not DeadLetterFilter.of(request_ids=["r-2"]).selects(letter)
    assert not DeadLetterFilter(since_ms=letter.timestamp_ms + 1).selects(letter)


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_a_dead_letter_says_what_its_headers_and_request_say(kind: str) -> None:
    headers = [
        (Header.CONTENT_TYPE, b"application/msgpack"),
        (Header.DLQ_REASON, b"retries_exhausted"),
        (Header.DLQ_DETAIL, b"provider_down: scripted"),
        (Header.DLQ_SOURCE_TOPIC, request_topic(kind).encode()),
        (Header.DLQ_SOURCE_PARTITION, b"2"),
        (Header.DLQ_SOURCE_OFFSET, b"41"),
    ]
    info = _record(_request(kind=kind), headers, kind=kind).info
    assert (info.request_id, info.tenant, info.reason) == ("r-1", "acme", "retries_exhausted")
    assert (info.source_topic, info.source_partition, info.source_offset) == (
        request_topic(kind), 2, 41
    )  # fmt: skip
    bare = _record(b"\xc1", [], kind=kind).info
    assert (bare.request_id, bare.tenant, bare.reason, bare.source_offset) == (
        None, None, "unknown", None
    )  # fmt: skip


def test_a_replayed_record_keeps_its_own_headers_and_drops_the_fleets_bookkeeping() -> None:
    kept = [
        (Header.CONTENT_TYPE, b"application/msgpack"),
        (Header.TENANT_SIGNATURE, b"sig"),
        (Header.TRACEPARENT, b"00-abc-def-01"),
    ]
    bookkeeping = [
        (Header.RETRY_COUNT, b"3"),
        (Header.RETRY_ATTEMPT, b"3"),
        (Header.DLQ_REASON, b"retries_exhausted"),
    ]
    assert replay_headers(_record(_request(), kept + bookkeeping)) == kept


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_what_cannot_be_replayed_is_refused_with_the_reason(kind: str) -> None:
    now_ms = time.time() * 1000
    assert refusal(_record(_request(kind=kind), [], kind=kind), kind, "fleet", now_ms) is None
    undecodable = refusal(_record(b"\xc1", [], kind=kind), kind, "fleet", now_ms)
    assert undecodable is not None
    assert "(undecodable)" in undecodable
    other = "speech" if kind == "generate" else "generate"
    foreign = refusal(_record(_request(kind=other), [], kind=kind), kind, "fleet", now_ms)
    assert f"not a {kind} request" in (foreign or "")
    expired = _record(_request(deadline_ms=int(now_ms) - 1000, kind=kind), [], kind=kind)
    assert "deadline passed" in (refusal(expired, kind, "fleet", now_ms) or "")
    from_control = [(Header.DLQ_SOURCE_TOPIC, control_topic(kind).encode())]
    control = _record(_request(kind=kind), from_control, kind=kind)
    assert "control message" in (refusal(control, kind, "fleet", now_ms) or "")
