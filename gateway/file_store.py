"""Uploaded files, kept on Kafka so that every gateway replica reads what any one took: a
topic per file (``file_topic``) holding its bytes in parts, then a header that says the file
is whole and whose it is (contracts/files.py, decision 0036). The header is the topic's last
record, so a file's metadata is read without its parts, and a tenant's files are found by
reading the last record of every file topic."""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

from aiokafka import TopicPartition

from contracts.codec import encode
from contracts.envelope import is_identifier
from contracts.errors import ContractError
from contracts.files import FILE_PART_BYTES, FileHeader, FilePart, decode_file_record
from contracts.names import file_topic, file_topic_prefix
from gateway.errors import OpenAIError
from producer_sdk import BatchClient
from producer_sdk.errors import broker_errors
from transport import topology
from transport.topic_admin import delete_topics
from transport.topic_reader import TopicMissing, last_records, read_to_end


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


async def file_header(batches: BatchClient, file_id: str) -> FileHeader | None:
    """The header of the file ``file_id`` of the batch client's tenant, read without its
    parts (one fetch of the topic's last record); None as ``get_file`` says None."""
    if not is_identifier(file_id):
        return None
    topic = file_topic(file_id, batches.namespace)
    with broker_errors("reading an uploaded file's header"):
        last = (await last_records(batches.connection, [TopicPartition(topic, 0)])).get(
            TopicPartition(topic, 0)
        )
    header = _header(last.value, file_id) if last is not None else None
    return header if header is not None and header.tenant == batches.tenant else None


async def list_files(batches: BatchClient) -> list[FileHeader]:
    """The headers of the batch client's tenant's files, in no order.

    What it costs: the cluster's metadata (every topic's, the file topics found in it),
    then the last record of every file topic of the namespace, every tenant's, since a
    file's tenant is in its header only: one offsets request each way and one fetch for
    them all, of a few hundred bytes a file (10,000 files: a few MB), and no part of any
    file. A call that races the delete of some file waits about 2 s for its topic to be
    seen gone (transport/topic_reader.py)."""
    prefix = file_topic_prefix(batches.namespace)
    with broker_errors("listing uploaded files"):
        lasts = await last_records(batches.connection, prefix=prefix)
    headers = (_header(r.value, tp.topic.removeprefix(prefix)) for tp, r in lasts.items())
    return [h for h in headers if h is not None and h.tenant == batches.tenant]


async def delete_file(batches: BatchClient, file_id: str) -> bool:
    """Delete the file ``file_id`` of the batch client's tenant (its topic); False when it
    has no such file (another tenant's, one never uploaded, or one deleted already, by this
    or a concurrent call). A read of the file under way when the topic goes fails with
    TopicMissing, as one of a file never uploaded (no read waits for it forever)."""
    if await file_header(batches, file_id) is None:
        return False
    topic = file_topic(file_id, batches.namespace)
    with broker_errors("deleting an uploaded file"):
        return topic in await delete_topics(batches.connection, [topic])


def _header(value: bytes | None, file_id: str) -> FileHeader | None:
    """``value`` as the header of ``file_id``; None when it is not one (a part: the upload
    never finished)."""
    with contextlib.suppress(ContractError):
        record = decode_file_record(value or b"")
        if isinstance(record, FileHeader) and record.file_id == file_id:
            return record
    return None


def _parts(file_id: str, data: bytes) -> list[FilePart]:
    return [
        FilePart(file_id=file_id, index=index, data=data[start : start + FILE_PART_BYTES])
        for index, start in enumerate(range(0, len(data), FILE_PART_BYTES))
    ]


def part_count(size: int) -> int:
    """How many parts ``put`` writes for ``size`` bytes."""
    return -(-size // FILE_PART_BYTES)
