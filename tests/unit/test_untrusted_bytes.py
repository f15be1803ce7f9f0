"""Bytes from anyone who can write to a topic: depth bombs, bad headers and bad reply
addresses end as typed dead letters, never as an exception that escapes a decoder or the
runner."""

from __future__ import annotations

import json

import msgspec
import pytest
from aiokafka.errors import KafkaError

from contracts import CancelJob, ContentType, DeadLetterReason, ErrorReply, Header
from contracts.codec import decode_chunk, decode_control, decode_request, decode_request_head
from contracts.errors import ContractError, ContractViolation
from tests.unit.job_runner_harness import DEAD, REPLIES, Fixture, _probe, _record, _request
from tests.unit.memory_publisher import MemoryPublisher

DEPTH = 100_000


# A tool's JSON Schema parameters may nest freely: the one place in a request where depth
# is the schema's to allow, so the decoder's depth limit has to be what stops a bomb.
IN_TOOL_PARAMETERS = [{"name": "f", "parameters": {"type": "BOMB"}}]


def _json_bomb(field: str, depth: int = DEPTH, holder: object = "BOMB") -> bytes:
    """A generate request whose ``field`` holds ``holder`` with arrays nested ``depth``
    deep where it says BOMB."""
    request = json.loads(msgspec.json.encode(_request()))
    body = json.dumps({**request, field: holder})
    return body.replace('"BOMB"', "[" * depth + "]" * depth).encode()


def _msgpack_bomb() -> bytes:
    """A control message with an unknown field of arrays nested DEPTH deep (msgpack)."""
    message = msgspec.msgpack.encode(CancelJob(request_id="r", tenant="t"))
    assert message[0] & 0xF0 == 0x80, "a fixmap: one more entry is one more in the low bits"
    return bytes([message[0] + 1]) + message[1:] + b"\xa4bomb" + b"\x91" * DEPTH + b"\x90"


def test_a_depth_bomb_where_a_tool_schema_may_nest_is_too_deep() -> None:
    with pytest.raises(ContractError) as info:
        decode_request("generate", _json_bomb("tools", holder=IN_TOOL_PARAMETERS), max_bytes=10**7)
    assert info.value.reason is ContractViolation.TOO_DEEP


@pytest.mark.parametrize("field", ["unknown_field", "tools", "messages"])
def test_a_depth_bomb_in_a_request_is_a_contract_error(field: str) -> None:
    with pytest.raises(ContractError) as info:
        decode_request("generate", _json_bomb(field), max_bytes=10_000_000)
    assert info.value.reason in {ContractViolation.TOO_DEEP, ContractViolation.SCHEMA}
    assert decode_request_head(_json_bomb(field)) is None or field == "messages"


def test_a_depth_bomb_on_the_control_topic_is_a_contract_error() -> None:
    """Refused at its unknown key, before the decoder walks into it."""
    with pytest.raises(ContractError) as info:
        decode_control(_msgpack_bomb(), max_bytes=10_000_000)
    assert info.value.reason is ContractViolation.SCHEMA
    assert "unknown field `bomb`" in str(info.value)


def test_control_messages_are_bounded_and_read_as_json_too() -> None:
    cancel = CancelJob(request_id="r-1", tenant="acme", submission="acme/1")
    assert decode_control(msgspec.json.encode(cancel)) == cancel
    assert decode_control(msgspec.json.encode(cancel), ContentType.JSON) == cancel
    with pytest.raises(ContractError) as info:
        decode_control(b"\x80" * 100_000)
    assert info.value.reason is ContractViolation.OVERSIZED


def test_a_reply_chunk_bomb_is_a_contract_error_for_the_sdk() -> None:
    with pytest.raises(ContractError):
        decode_chunk(b"\x91" * DEPTH + b"\x90")


@pytest.mark.parametrize(
    "address",
    [
        {"topic": "replies", "partition": -1},
        {"topic": "replies", "partition": 2**40},
        {"topic": "not a topic name", "partition": 0},
        {"topic": "x" * 250, "partition": 0},
    ],
)
def test_reply_addresses_kafka_cannot_take_are_schema_errors(address: dict[str, object]) -> None:
    request = json.loads(msgspec.json.encode(_request()))
    with pytest.raises(ContractError) as info:
        decode_request("generate", json.dumps({**request, "reply_to": address}).encode())
    assert info.value.reason is ContractViolation.SCHEMA


async def test_a_depth_bomb_request_is_dead_lettered_and_the_worker_goes_on() -> None:
    job = Fixture()
    bomb = _json_bomb("tools", depth=20_000, holder=IN_TOOL_PARAMETERS)  # under 100 kB
    await job.runner.run(_record(bomb))
    ((reason, _),) = job.dead_letters()
    assert reason == DeadLetterReason.TOO_DEEP
    await job.runner.run(_record(msgspec.json.encode(_request("next"))))
    assert job.chat.calls == 1


@pytest.mark.parametrize("value", [b"two", b"-1", b"1e9", b"9" * 40, b"\xff\xfe"])
async def test_a_bad_retry_header_is_dead_lettered_and_answered(value: bytes) -> None:
    job = Fixture()
    await job.runner.run(_record(msgspec.msgpack.encode(_request()), [(Header.RETRY_COUNT, value)]))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.BAD_HEADER
    assert Header.RETRY_COUNT in detail
    (reply,) = job.publisher.replies(REPLIES)
    assert isinstance(reply, ErrorReply)
    assert job.chat.calls == 0


async def test_a_bad_retry_header_whose_dead_letter_fails_runs_again_until_it_is_taken() -> None:
    publisher = MemoryPublisher(unreachable=[DEAD])  # the broker times the dead letter out
    job = Fixture(publisher=publisher)
    record = _record(msgspec.msgpack.encode(_request()), [(Header.RETRY_COUNT, b"1e3")])
    # A Kafka error is what the consume loop runs a job again for (not a runner bug): the
    # failure handling must not trip over the same bad header while it handles it.
    with pytest.raises(KafkaError):
        await job.runner.run(record)
    publisher.unreachable.clear()
    await job.runner.run(record)
    ((reason, _),) = job.dead_letters()
    assert reason == DeadLetterReason.BAD_HEADER
    assert job.chat.calls == 0


async def test_a_reply_topic_outside_the_fleet_is_dead_lettered_and_sent_nothing() -> None:
    job = Fixture(reply_topic_allowed=lambda topic: topic.startswith("unit.v1.replies."))
    request = _request()
    assert request.reply_to is not None
    outside = msgspec.structs.replace(
        request, reply_to=msgspec.structs.replace(request.reply_to, topic="payments")
    )
    await job.runner.run(_record(msgspec.msgpack.encode(outside)))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.BAD_REPLY_ADDRESS
    assert "'payments' is not a reply topic of this fleet" in detail
    assert job.publisher.on("payments") == []
    assert job.chat.calls == 0


async def test_a_partition_the_reply_topic_lacks_is_dead_lettered_and_sent_nothing() -> None:
    job = Fixture(reply_topic_allowed=lambda topic: True, topic_probe=_probe(1))
    request = _request()
    assert request.reply_to is not None
    beyond = msgspec.structs.replace(
        request, reply_to=msgspec.structs.replace(request.reply_to, partition=99)
    )
    await job.runner.run(_record(msgspec.msgpack.encode(beyond)))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.BAD_REPLY_ADDRESS
    assert "has 1 partitions, not 99" in detail
    assert job.publisher.replies(REPLIES) == []
    await job.runner.run(_record(msgspec.msgpack.encode(request)))  # partition 0 is fine
    assert job.chat.calls == 1


async def test_a_tenant_header_that_is_not_the_requests_tenant_is_dead_lettered() -> None:
    job = Fixture()
    request = _request(tenant="acme")
    await job.runner.run(_record(msgspec.msgpack.encode(request), [(Header.TENANT, b"globex")]))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.BAD_HEADER
    assert "'globex'" in detail
    assert "'acme'" in detail
    assert job.chat.calls == 0
    same = _request("same", tenant="acme")
    await job.runner.run(_record(msgspec.msgpack.encode(same), [(Header.TENANT, b"acme")]))
    assert job.chat.calls == 1  # a header that says the request's tenant runs
