"""``/v1/batches``: OpenAI's Batch API over the fleet-owned batch (decision 0020): a batch is
made from a file uploaded to ``/v1/files`` and submitted with the tenant's ``BatchClient``,
so the batch coordinators run it as that tenant; its status, cancel and list are the
client's, read from the batch topics by whichever gateway replica is asked. Another
tenant's batch is 404, as one that does not exist."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.batch import ENDPOINT_KIND, BatchInfo, BatchState
from contracts.errors import ContractError
from gateway.batch_objects import batch_object
from gateway.errors import OpenAIError, decoded_body, from_fleet, invalid_request
from gateway.file_store import StoredFile, get_file
from gateway.list_pages import first_page, page_limit
from producer_sdk import BatchClient, BatchNotFound

if TYPE_CHECKING:
    from gateway.app import GatewayState

# OpenAI's `24h`; any whole number of hours is honoured (the coordinator expires the batch).
_WINDOW: Final = re.compile(r"([1-9][0-9]{0,5})h")
_DEFAULT_PAGE: Final = 20
# OpenAI's bounds on a batch's metadata.
_MetadataKey = Annotated[str, msgspec.Meta(max_length=64)]
_MetadataValue = Annotated[str, msgspec.Meta(max_length=512)]
_Metadata = Annotated[dict[_MetadataKey, _MetadataValue], msgspec.Meta(max_length=16)]


class BatchCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: _Metadata | None = None


def routes(state: GatewayState) -> list[Route]:
    async def create_batch(request: Request) -> Response:
        batches = await state.batches(state.tenant(request))
        call = _read_call(await request.body())
        window_s = _window_s(call.completion_window)
        if call.endpoint not in ENDPOINT_KIND:
            raise invalid_request(
                f"the fleet runs batches of {' and '.join(ENDPOINT_KIND)}, not {call.endpoint}",
                "endpoint",
            )
        stored = await from_fleet(get_file(batches, call.input_file_id))
        if stored is None:
            raise _no_file(call.input_file_id)
        if stored.header.endpoint != call.endpoint:
            raise invalid_request(
                f"the rows of {call.input_file_id} ask for {stored.header.endpoint}, "
                f"not {call.endpoint}",
                "endpoint",
            )
        state.models.check(stored.header.model, ENDPOINT_KIND[call.endpoint])
        info = await from_fleet(_submit(batches, stored, window_s, call.metadata or {}))
        return _json(batch_object(info))

    async def retrieve_batch(request: Request) -> Response:
        batches = await state.batches(state.tenant(request))
        return _json(batch_object(await _status(batches, request.path_params["batch_id"])))

    async def cancel_batch(request: Request) -> Response:
        batches = await state.batches(state.tenant(request))
        batch_id = request.path_params["batch_id"]
        try:  # sent unless the batch has ended: then it is answered as it is
            info = await from_fleet(batches.cancel(batch_id))
        except BatchNotFound:
            raise _no_batch(batch_id) from None
        if info.ended:
            raise OpenAIError(
                409, f"Cannot cancel a batch with status '{info.status}'.", code="batch_ended"
            )
        if info.state is not BatchState.CANCELLING:
            # As OpenAI answers: cancelling from now on (the coordinator's own status says
            # so once it has read the cancel, on the broker before this answer).
            info = info.entering(BatchState.CANCELLING, time.time())
        return _json(batch_object(info))

    async def list_batches(request: Request) -> Response:
        batches = await state.batches(state.tenant(request))
        limit = page_limit(request.query_params.get("limit"), default=_DEFAULT_PAGE, most=100)
        after = request.query_params.get("after")
        listed = await from_fleet(batches.list())  # newest first
        if after is not None:
            ids = [info.id for info in listed]
            listed = listed[ids.index(after) + 1 :] if after in ids else []
        # One past the page: enough to say whether more follow.
        return _json(first_page([batch_object(info) for info in listed[: limit + 1]], limit))

    return [
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", retrieve_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    ]


def _read_call(raw: bytes) -> BatchCall:
    return decoded_body(raw, BatchCall)


def _window_s(window: str) -> float:
    hours = _WINDOW.fullmatch(window)
    if hours is None:
        raise invalid_request(
            f"completion_window must be whole hours, such as 24h, not {window!r}",
            "completion_window",
        )
    return int(hours.group(1)) * 3600.0


async def _submit(
    batches: BatchClient, stored: StoredFile, window_s: float, metadata: dict[str, str]
) -> BatchInfo:
    """The file submitted as a batch: its rows written to the batch's input topic, then the
    submit for the coordinators."""
    with tempfile.TemporaryDirectory(prefix="fleet-gateway-") as directory:
        # Named by its file id: the batch keeps its input file's name (`input_file_id`).
        path = Path(directory) / stored.header.file_id
        path.write_bytes(stored.data)
        try:
            return await batches.submit(path, format="jsonl", window_s=window_s, metadata=metadata)
        except ContractError as exc:  # read when it was uploaded: only a fleet change could
            raise invalid_request(str(exc), "input_file_id") from exc


async def _status(batches: BatchClient, batch_id: str) -> BatchInfo:
    try:
        return await from_fleet(batches.status(batch_id))
    except BatchNotFound:
        raise _no_batch(batch_id) from None


def _no_batch(batch_id: str) -> OpenAIError:
    return OpenAIError(
        404, f"No batch found with id '{batch_id}'.", param="batch_id", code="not_found"
    )


def _no_file(file_id: str) -> OpenAIError:
    return OpenAIError(
        404, f"No such File object: {file_id}", param="input_file_id", code="not_found"
    )


def _json(body: msgspec.Struct) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")
