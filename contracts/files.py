"""The records of an uploaded file's topic (``file_topic``): the gateway's ``POST /v1/files``
writes the file's bytes in parts, then its header; any gateway replica reads them back
(docs/decisions/0036-files-and-batches-over-http.md). A topic without a header holds an
upload that never finished: no file."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from contracts.batch import Endpoint
from contracts.envelope import Count, Identifier
from contracts.errors import ContractError

# A part stays well under the broker's default message limit (about 1 MiB).
FILE_PART_BYTES: Final = 512 * 1024


class FilePart(msgspec.Struct, frozen=True, kw_only=True, tag="part", tag_field="record"):
    """Bytes ``index * FILE_PART_BYTES`` on of the file."""

    file_id: Identifier
    index: Count
    data: bytes


class FileHeader(msgspec.Struct, frozen=True, kw_only=True, tag="header", tag_field="record"):
    """Written after every part: the file is whole. Only ``tenant`` may read or use it.
    ``endpoint``, ``model`` and ``rows`` are what the batch input it holds asks for (read
    when it was uploaded)."""

    file_id: Identifier
    tenant: Identifier
    filename: str
    purpose: str
    bytes: Annotated[int, msgspec.Meta(ge=0)]
    parts: Count
    created_at: float
    endpoint: Endpoint
    model: str
    rows: Annotated[int, msgspec.Meta(ge=1)]


FileRecord = FilePart | FileHeader

_decoder: Final[msgspec.msgpack.Decoder[Any]] = msgspec.msgpack.Decoder(FileRecord)


def decode_file_record(payload: bytes) -> FileRecord:
    try:
        record: FileRecord = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ContractError(f"not a file record: {exc}") from exc
    return record
