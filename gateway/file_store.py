"""Uploaded files, kept on Kafka so that every gateway replica reads what any one took: a
topic per file (``file_topic``) holding its bytes in parts, then a header that says the file
is whole and whose it is (contracts/files.py, decision 0036)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

from contracts.codec import encode
from contracts.envelope import is_identifier
from contracts.errors import ContractError
from contracts.files import FILE_PART_BYTES, FileHeader, FilePart, decode_file_record
from contracts.names import file_topic
from gateway.errors import OpenAIError
from producer_sdk import BatchClient
from producer_sdk.errors import broker_errors
from transport import topology
from transport.topic_reader import TopicMissing, read_to_end


class StoredFile(NamedTuple):
    header: FileHeader
    data: bytes


async def put_file(batches: BatchClient, header: FileHeader, data: bytes) -> None:
    """Write ``data`` under ``header.file_id`` with the tenant's batch client: its parts,
    then (once they are all on the broker) the header, so that no reader takes a file half
    written for a whole one."""
    topic = file_topic(header.file_id, batches.namespace)
    with broker_errors("storing an uploaded file"):
        # Kept as long as a batch's input (the file is one, or is to become one).
        await topology.create(batches.connection, {topic: topology.batch_data()})
        sent = [
            await batches.producer.send(topic, encode(part), partition=0)
            for part in _parts(header.file_id, data)
        ]
        await asyncio.gather(*sent)
        await batches.producer.send_and_wait(topic, encode(header), partition=0)


async def get_file(batches: BatchClient, file_id: str) -> StoredFile | None:
    """The file ``file_id`` of the batch client's tenant; None when there is none (or it is
    another tenant's, or its upload never finished)."""
    if not is_identifier(file_id):  # not a name a topic can have
        return None
    header: FileHeader | None = None
    parts: dict[int, bytes] = {}
    with broker_errors("reading an uploaded file"), contextlib.suppress(TopicMissing):
        topic = file_topic(file_id, batches.namespace)
        async for record in read_to_end(batches.connection, topic):
            with contextlib.suppress(ContractError):
                stored = decode_file_record(record.value or b"")
                if stored.file_id != file_id:
                    continue
                if isinstance(stored, FileHeader):
                    header = stored
                else:
                    parts.setdefault(stored.index, stored.data)  # one sent twice: once
    if header is None or header.tenant != batches.tenant:
        return None
    data = b"".join(parts.get(i, b"") for i in range(header.parts))
    if len(data) != header.bytes:  # retention took its first parts: lost, say so
        raise OpenAIError(500, f"the file {file_id} has lost parts of its content")
    return StoredFile(header, data)


def _parts(file_id: str, data: bytes) -> list[FilePart]:
    return [
        FilePart(file_id=file_id, index=index, data=data[start : start + FILE_PART_BYTES])
        for index, start in enumerate(range(0, len(data), FILE_PART_BYTES))
    ]


def part_count(size: int) -> int:
    """How many parts ``put`` writes for ``size`` bytes."""
    return -(-size // FILE_PART_BYTES)
