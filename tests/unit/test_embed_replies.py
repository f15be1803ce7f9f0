"""Embed results on the wire: float32 rows, results larger than one message sent in parts and
joined again, shortened vectors."""

from __future__ import annotations

import json
import random

import msgspec
import numpy as np
import pytest

from contracts import ContentType, ErrorCode
from contracts.codec import decode_chunk, encode
from contracts.embed_parts import EmbedJoiner, pack_float32, unpack_float32
from contracts.envelope import ReplyAddress
from contracts.replies import EmbedPart, EmbedResult
from providers.errors import ProviderError
from tests.unit.memory_publisher import MemoryPublisher
from workers.failure_table import ReplyTooLarge
from workers.handlers.embed import shortened
from workers.handlers.reply_stream import ReplyStream
from workers.settings import ReplyLimits

DIMENSION = 384
TOPIC = "replies"


def _rows(n: int) -> list[list[float]]:
    rng = random.Random(n)
    # float32-representable values, so a round trip through float32 is exact
    return [[float(np.float32(rng.uniform(-1, 1))) for _ in range(DIMENSION)] for _ in range(n)]


def _result(rows: list[list[float]], *, packed: bool, seq: int = 0) -> EmbedResult:
    return EmbedResult(
        request_id="r-1",
        attempt=2,
        seq=seq,
        model="m",
        dimension=DIMENSION,
        vectors=[] if packed else rows,
        vectors_float32=pack_float32(rows) if packed else None,
        custom_ids=[f"row-{i}" for i in range(len(rows))],
    )


def test_float32_rows_round_trip_in_a_quarter_of_the_float64_size() -> None:
    rows = _rows(3)
    packed = pack_float32(rows)
    assert len(packed) == 3 * DIMENSION * 4
    assert unpack_float32(packed, DIMENSION) == rows
    with pytest.raises(ValueError, match="do not make rows"):
        unpack_float32(packed[:-1], DIMENSION)


def test_packed_vectors_are_a_base64_string_in_json() -> None:
    result = _result(_rows(2), packed=True)
    body = json.loads(encode(result, ContentType.JSON))
    assert isinstance(body["vectors_float32"], str)
    assert body["vectors"] == []
    decoded = decode_chunk(encode(result, ContentType.JSON), ContentType.JSON)
    assert decoded == result


@pytest.mark.parametrize(
    ("packed", "content_type"),
    [(True, ContentType.MSGPACK), (True, ContentType.JSON), (False, ContentType.JSON)],
)
async def test_a_result_larger_than_one_message_travels_in_parts_and_joins_again(
    packed: bool, content_type: str
) -> None:
    rows = _rows(60)
    result = _result(rows, packed=packed, seq=5)
    limits = ReplyLimits(part_bytes=20_000)
    publisher = MemoryPublisher(max_bytes=limits.part_bytes)
    stream = ReplyStream(publisher, ReplyAddress(topic=TOPIC, partition=0), content_type, limits)
    await stream.send(result)
    await stream.flush()

    messages = publisher.on(TOPIC)
    assert len(messages) > 2
    assert all(len(m.value or b"") <= limits.part_bytes for m in messages)
    assert stream.sent == len(messages)
    chunks = [decode_chunk(m.value or b"", content_type) for m in messages]
    assert [c.seq for c in chunks] == list(range(5, 5 + len(chunks)))
    *parts, final = chunks
    assert all(isinstance(p, EmbedPart) for p in parts)
    assert isinstance(final, EmbedResult)
    joiner = EmbedJoiner()
    for part in parts:
        assert isinstance(part, EmbedPart)
        joiner.add(part)
    joined = joiner.join(final)
    assert joined.vectors == rows
    assert joined.custom_ids == result.custom_ids
    assert joined.first_row == 0
    if packed:
        assert joined.vectors_float32 == result.vectors_float32


async def test_a_result_over_the_whole_reply_bound_is_refused_naming_the_limit() -> None:
    limits = ReplyLimits(part_bytes=2_000, max_bytes=10_000)
    stream = ReplyStream(MemoryPublisher(), ReplyAddress(topic=TOPIC, partition=0), limits=limits)
    with pytest.raises(ReplyTooLarge, match=r"replies.max_bytes = 10000"):
        await stream.send(_result(_rows(20), packed=True))
    assert stream.sent == 0


def test_the_joiner_refuses_a_missing_part_and_forgets_a_restarted_attempt() -> None:
    rows = _rows(4)
    part = EmbedPart(
        request_id="r-1",
        seq=0,
        first_row=0,
        dimension=DIMENSION,
        vectors_float32=pack_float32(rows[:2]),
    )
    final = msgspec.structs.replace(_result(rows[2:], packed=True), first_row=2, seq=1)
    joiner = EmbedJoiner()
    with pytest.raises(ValueError, match="starting at row 2 after 0 rows"):
        joiner.join(final)
    joiner.add(part)
    joiner.restart()
    joiner.add(part)
    assert joiner.join(final).vectors == rows


def test_shortened_vectors_keep_their_first_numbers_at_unit_length() -> None:
    rows = np.asarray(_rows(3), dtype=np.float32)
    short = shortened(rows, 64, "m")
    assert short.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, rtol=1e-5)
    cosine = short[0] @ (rows[0, :64] / np.linalg.norm(rows[0, :64]))
    assert cosine == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ProviderError) as info:
        shortened(rows, DIMENSION + 1, "m")
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "makes vectors of 384" in info.value.detail
