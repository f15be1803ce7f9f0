"""A request near the broker's limit ends like any other: what of it does not fit beside
the dead-letter or retry headers is kept as a pointer, and the caller is answered
`invalid_input` with the size (the runner without a broker: tests/unit/job_runner_harness.py).
"""

from __future__ import annotations

import hashlib

import msgspec
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from contracts import ChatMessage, DeadLetterReason, ErrorCode, ErrorReply, Header
from contracts.codec import encode
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.job_runner_harness import DEAD, REPLIES, Fixture, _final, _record, _request


def _padded(request_id: str, size: int) -> bytes:
    """A request of ``size`` bytes exactly, its one message padded."""

    def with_text(length: int) -> bytes:
        message = ChatMessage(role="user", content="x" * length)
        return encode(msgspec.structs.replace(_request(request_id), messages=[message]))

    guess = with_text(size)  # the padding's length prefix is the same for both
    value = with_text(2 * size - len(guess))
    assert len(value) == size
    return value


def _fits_only_bare(job: Fixture, value: bytes) -> None:
    """Make the broker take the record as it came (its key and value), and no more."""
    job.publisher.max_bytes = DefaultRecordBatchBuilder.estimate_size_in_bytes(b"key", value, [])


async def test_a_request_whose_dead_letter_does_not_fit_is_kept_as_a_pointer() -> None:
    job = Fixture()
    value = _padded("near-1", 100_400)  # over the worker's 100 000 bytes
    _fits_only_bare(job, value)
    await job.runner.run(_record(value))
    (letter,) = job.publisher.on(DEAD)
    assert letter.value == b""
    assert letter.headers[Header.DLQ_REASON] == DeadLetterReason.OVERSIZED.value.encode()
    assert letter.headers[Header.DLQ_ORIGINAL_BYTES] == b"100400"
    assert letter.headers[Header.DLQ_ORIGINAL_SHA256] == hashlib.sha256(value).hexdigest().encode()
    assert letter.headers[Header.DLQ_SOURCE_OFFSET] == b"7"  # where the original still is
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INVALID_INPUT
    assert "100400 bytes" in final.message


async def test_a_dead_letter_that_fits_keeps_the_original_whole() -> None:
    job = Fixture()
    value = _padded("near-2", 100_400)
    await job.runner.run(_record(value))  # the producer's default: 1 MiB
    (letter,) = job.publisher.on(DEAD)
    assert letter.value == value
    assert Header.DLQ_ORIGINAL_BYTES not in letter.headers


async def test_a_request_whose_retry_copy_does_not_fit_is_answered_with_its_size() -> None:
    job = Fixture(ScriptedChat(failures=[ErrorCode.PROVIDER_DOWN]))  # worth a retry
    value = _padded("near-3", 60_000)  # under the worker's limit: it runs
    _fits_only_bare(job, value)
    await job.runner.run(_record(value))
    assert job.chat.calls == 1
    assert not [s for s in job.publisher.sent if ".retry-" in s.topic]
    (letter,) = job.publisher.on(DEAD)
    assert letter.headers[Header.DLQ_REASON] == DeadLetterReason.OVERSIZED.value.encode()
    assert letter.headers[Header.DLQ_ORIGINAL_BYTES] == b"60000"
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INVALID_INPUT
    assert "60000 bytes" in final.message
    assert "cannot be tried again" in final.message
