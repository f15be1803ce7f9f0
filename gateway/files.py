"""``/v1/files``: a batch input file uploaded (``purpose=batch``), read through whole before
it is kept, so that a file that is not batch input (not JSONL, a row that does not parse,
an endpoint or a field the fleet does not serve) is a 400 naming its line and nothing is
stored; then the file as OpenAI's ``file`` object, its content, the tenant's files as a
list, and its delete. A batch's output and error files are served here too
(``gateway/result_files.py``), but neither listed nor deleted. Another tenant's file is
404, as one that does not exist."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from contracts.errors import ContractError
from contracts.files import FileHeader
from gateway.errors import OpenAIError, from_fleet, invalid_request
from gateway.file_store import (
    StoredFile,
    delete_file,
    file_header,
    get_file,
    list_files,
    part_count,
    put_file,
)
from gateway.list_pages import first_page, page_limit
from gateway.multipart_form import Upload, read_form
from gateway.result_files import ResultFile, is_result_file_id, result_file
from producer_sdk import BatchClient
from producer_sdk.batch.input_reader import BatchInputReader
from producer_sdk.batches import PAGE_BYTES, PAGE_ROWS

if TYPE_CHECKING:
    from gateway.app import GatewayState

_JSONL = "application/jsonl"
# The list's query parameters, all honoured (OpenAI's, with its bounds on ``limit``).
_LIST_PARAMS: Final = frozenset({"after", "limit", "order", "purpose"})
_MOST_LISTED: Final = 10_000
_ORDERS: Final = ("asc", "desc")


class FileObject(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"  # read through already: a bad file is refused, not kept
    status_details: None = None


class FileDeleted(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str = "file"
    deleted: bool = True


def routes(state: GatewayState) -> list[Route]:
    async def upload_file(request: Request) -> Response:
        batches = await state.batches(state.tenant(request))
        form = await read_form(request.headers.get("content-type"), await request.body())
        if unknown := sorted(form.names() - {"file", "purpose"}):  # refused, not dropped
            raise invalid_request(
                f"`{unknown[0]}` is not one the fleet honours in a file upload", unknown[0]
            )
        purpose = form.fields.get("purpose", [""])[-1]
        if purpose != "batch":
            raise invalid_request(
                f"the fleet keeps files for batches only: purpose must be 'batch', not {purpose!r}",
                "purpose",
            )
        upload = form.files.get("file")
        if upload is None:
            raise invalid_request("the form has no `file` part", "file")
        # Parsing a large file takes a while: off the loop, which serves other requests.
        reader = await asyncio.to_thread(_read_batch_input, upload)
        assert reader.endpoint is not None  # read whole: known
        assert reader.model is not None
        header = FileHeader(
            file_id=f"file-{uuid.uuid4().hex}",
            tenant=batches.tenant,
            filename=upload.filename,
            purpose=purpose,
            bytes=len(upload.data),
            parts=part_count(len(upload.data)),
            created_at=time.time(),
            endpoint=reader.endpoint,
            model=reader.model,
            rows=reader.rows,
        )
        await from_fleet(put_file(batches, header, upload.data))
        return _json(_uploaded(header))

    async def retrieve_file(request: Request) -> Response:
        batches = await state.batches(state.tenant(request))
        file_id = request.path_params["file_id"]
        if is_result_file_id(file_id):
            result = await _result_file(batches, file_id)
            try:
                return _json(_result(result))
            finally:
                result.discard()
        header = await from_fleet(file_header(batches, file_id))  # the parts are not read
        if header is None:
            raise _no_file(file_id)
        return _json(_uploaded(header))

    async def file_content(request: Request) -> Response:
        batches = await state.batches(state.tenant(request))
        file_id = request.path_params["file_id"]
        if is_result_file_id(file_id):  # sent from its file, which goes once it has been
            result = await _result_file(batches, file_id)
            return FileResponse(result.path, media_type=_JSONL, background=_discarding(result))
        return Response((await _stored_file(batches, file_id)).data, media_type=_JSONL)

    async def list_uploaded(request: Request) -> Response:
        batches = await state.batches(state.tenant(request))
        query = request.query_params
        if unknown := sorted(set(query) - _LIST_PARAMS):  # refused, not dropped
            raise invalid_request(
                f"`{unknown[0]}` is not one the fleet honours in a file list", unknown[0]
            )
        limit = page_limit(query.get("limit"), default=_MOST_LISTED, most=_MOST_LISTED)
        order = query.get("order", "desc")
        if order not in _ORDERS:
            raise invalid_request(f"order must be 'asc' or 'desc', not {order!r}", "order")
        purpose = query.get("purpose")
        if purpose == "batch_output":
            # Listing them would mean writing every ended batch's files to know their sizes.
            raise invalid_request(
                "batches' output and error files are not listed: they are the batch's "
                "output_file_id and error_file_id",
                "purpose",
            )
        headers = await from_fleet(list_files(batches))
        listed = sorted(
            (h for h in headers if purpose in (None, h.purpose)),
            key=lambda h: (h.created_at, h.file_id),  # the id: an order for equal times
            reverse=order == "desc",
        )
        files = [_uploaded(header) for header in listed]
        if (after := query.get("after")) is not None:
            ids = [file.id for file in files]
            if after not in ids:  # deleted, or not the tenant's: no place to go on from
                raise invalid_request(f"No such File object to list after: {after}", "after")
            files = files[ids.index(after) + 1 :]
        return _json(first_page(files, limit))

    async def delete_uploaded(request: Request) -> Response:
        batches = await state.batches(state.tenant(request))
        file_id = request.path_params["file_id"]
        if is_result_file_id(file_id):
            raise invalid_request(
                f"{file_id} is a batch's result file: it is written from the batch's output "
                "when asked for and goes with the batch, not on its own",
                "file_id",
            )
        # A batch made of the file has its own copy of the rows (its input topic, written
        # when it was made): it runs on whatever happens to the file.
        if not await from_fleet(delete_file(batches, file_id)):
            raise _no_file(file_id)
        return _json(FileDeleted(id=file_id))

    return [
        Route("/v1/files", upload_file, methods=["POST"]),
        Route("/v1/files", list_uploaded, methods=["GET"]),
        Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}", delete_uploaded, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
    ]


def _read_batch_input(upload: Upload) -> BatchInputReader:
    """The upload read through as a batch's input is on submit (the same reader, the same
    pages); a ContractError is a 400 naming the file by the name the client gave it and
    the line at fault."""
    name = upload.filename or "the file"
    with tempfile.TemporaryDirectory(prefix="fleet-gateway-") as directory:
        path = Path(directory) / "upload.jsonl"
        path.write_bytes(upload.data)
        reader = BatchInputReader(path, format="jsonl")
        try:
            for _ in reader.pages(max_rows=PAGE_ROWS, max_bytes=PAGE_BYTES):
                pass
        except ContractError as exc:
            # The reader names the file by its path, a temporary one the client never saw.
            raise invalid_request(name + str(exc).removeprefix(str(path)), "file") from exc
    if reader.model is None:
        raise invalid_request(f"{name}: no row names a model (its body's `model`)", "file")
    return reader


async def _result_file(batches: BatchClient, file_id: str) -> ResultFile:
    result = await from_fleet(result_file(batches, file_id))
    if result is None:
        raise _no_file(file_id)
    return result


async def _stored_file(batches: BatchClient, file_id: str) -> StoredFile:
    stored = await from_fleet(get_file(batches, file_id))
    if stored is None:
        raise _no_file(file_id)
    return stored


def _uploaded(header: FileHeader) -> FileObject:
    return FileObject(
        id=header.file_id,
        bytes=header.bytes,
        created_at=int(header.created_at),
        filename=header.filename,
        purpose=header.purpose,
    )


def _result(result: ResultFile) -> FileObject:
    batch = result.batch
    ended = batch.completed_at or batch.failed_at or batch.expired_at or batch.cancelled_at or 0.0
    return FileObject(
        id=result.file_id,
        bytes=result.path.stat().st_size,
        created_at=int(ended),
        filename=result.filename,
        purpose="batch_output",
    )


def _discarding(result: ResultFile) -> BackgroundTask:
    return BackgroundTask(result.discard)


def _no_file(file_id: str) -> OpenAIError:
    return OpenAIError(404, f"No such File object: {file_id}", param="file_id", code="not_found")


def _json(body: msgspec.Struct) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")
