"""Batch jobs the fleet owns (docs/decisions/0020-batch-jobs.md): the records on the batch
topics. A client writes a batch's rows to its input topic in pages, then a BatchSubmit on
the command topic; the coordinator keeps a BatchInfo per batch on the (compacted) status
topic and writes the rows' results to the batch's output topic in BatchResults records.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

import msgspec

from contracts.envelope import Count, Identifier, Name
from contracts.errors import ContractError
from contracts.generate import ChatMessage, ChatOptions
from contracts.names import DEFAULT_TENANT
from contracts.replies import RankedDocument
from contracts.rerank import RerankOptions
from contracts.strict import StrictStruct
from contracts.usage import Usage

# What a row asks for, as the OpenAI Batch API names it (its `url`).
Endpoint = Literal["/v1/embeddings", "/v1/chat/completions", "/v1/rerank"]
ENDPOINT_KIND: Final[dict[str, str]] = {
    "/v1/embeddings": "embed",
    "/v1/chat/completions": "generate",
    "/v1/rerank": "rerank",
}
# A batch's completion window unless its submit names one (OpenAI's `24h`).
DEFAULT_WINDOW_S: Final = 24 * 3600.0
# Rows a batch may hold; a page of rows is one record of the input topic.
MAX_BATCH_ROWS: Final = 5_000_000
CustomId = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class BatchState(enum.StrEnum):
    """OpenAI's batch lifecycle. validating -> in_progress -> finalizing -> completed; or
    failed (the input is not what the submit said), expired (the completion window passed),
    cancelling -> cancelled. Every end state keeps the rows finished before it."""

    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in _END_STATES


# BatchInfo.status: a BatchState's value. A Literal rather than the enum so that the JSON
# Schema keeps the field's `enum` inline, as it has always been published.
BatchStatus = Literal[
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
]
_END_STATES: Final = frozenset(
    {BatchState.COMPLETED, BatchState.FAILED, BatchState.EXPIRED, BatchState.CANCELLED}
)
# The field of BatchInfo that keeps when the batch entered each state (validating: created_at).
_ENTERED_AT: Final[Mapping[BatchState, str]] = {
    BatchState.IN_PROGRESS: "in_progress_at",
    BatchState.FINALIZING: "finalizing_at",
    BatchState.COMPLETED: "completed_at",
    BatchState.FAILED: "failed_at",
    BatchState.EXPIRED: "expired_at",
    BatchState.CANCELLING: "cancelling_at",
    BatchState.CANCELLED: "cancelled_at",
}


class StopReason(enum.StrEnum):
    """Why a batch stopped before it ran every row. The value is the error code each row it
    never ran gets in the downloaded files (OpenAI's names); ``state`` the state it ends in."""

    CANCELLED = "batch_cancelled"
    EXPIRED = "batch_expired"
    FAILED = "batch_failed"

    @property
    def state(self) -> BatchState:
        return _STOPPED_IN[self]

    @classmethod
    def of(cls, state: BatchState) -> StopReason:
        """Why a batch that ended in ``state`` never ran the rows it has no outcome of: a
        completed batch ran them all, so one it lacks was lost (failed)."""
        return next((reason for reason in cls if reason.state is state), cls.FAILED)

    def row_error(self) -> RowError:
        """The error of a row the batch never ran (retryable: a `retry` round runs it)."""
        return RowError(
            code=self.value, message=f"the batch {self.state} before this row ran", retryable=True
        )


_STOPPED_IN: Final[Mapping[StopReason, BatchState]] = {
    StopReason.CANCELLED: BatchState.CANCELLED,
    StopReason.EXPIRED: BatchState.EXPIRED,
    StopReason.FAILED: BatchState.FAILED,
}


class ChatBody(ChatOptions, frozen=True, kw_only=True):
    """The body of a ``/v1/chat/completions`` row, in OpenAI's names: the fields a
    GenerateRequest has. A field the fleet does not honour is refused when the file is
    read, never dropped (``n`` above 1, ``stream``, ``logprobs``...)."""

    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]


class BatchRow(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One row: a text to embed, a chat body to complete, or a query and documents to rank
    (as its batch's endpoint says)."""

    custom_id: CustomId
    text: str | None = None
    chat: ChatBody | None = None
    rerank: RerankOptions | None = None


class BatchInputPage(StrictStruct, frozen=True):
    """A record of a batch's input topic: pages are numbered 0, 1, ... in file order."""

    batch_id: Identifier
    page: Count
    rows: list[BatchRow]


class BatchSubmit(StrictStruct, frozen=True, tag="submit", tag_field="command"):
    """Run a batch whose input pages are on its input topic already, as ``tenant``: its
    rows run as that tenant's requests, and only that tenant may cancel, retry or read it.
    Where the coordinators have tenant keys, every command is signed with its tenant's key
    (the ``fleet-tenant-signature`` header, as requests are)."""

    batch_id: Identifier
    endpoint: Endpoint
    model: Name
    rows: Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH_ROWS)]
    pages: Annotated[int, msgspec.Meta(ge=1)]
    created_at: float
    completion_window_s: Annotated[float, msgspec.Meta(gt=0)]
    tenant: Identifier
    # An embed batch with a collection upserts each vector (id = custom_id) as it goes.
    collection: Name | None = None
    # Shorter vectors, as EmbedRequest.dimensions.
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    input_file: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class BatchCancel(StrictStruct, frozen=True, tag="cancel", tag_field="command"):
    """Stop a batch; the rows finished so far stay in its results. Only the batch's own
    tenant may (signed with its key where the coordinators have tenant keys)."""

    batch_id: Identifier
    requested_at: float
    tenant: Identifier = DEFAULT_TENANT


class BatchRetry(StrictStruct, frozen=True, tag="retry", tag_field="command"):
    """Run again the rows of an ended batch whose error is retryable, as round ``round``
    (its BatchInfo.round + 1): a retry read twice starts one round."""

    batch_id: Identifier
    round: Annotated[int, msgspec.Meta(ge=1)]
    requested_at: float
    # The round's completion window; None: the batch's own.
    completion_window_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # Only the batch's own tenant may start a round (as for BatchCancel).
    tenant: Identifier = DEFAULT_TENANT


BatchCommand = BatchSubmit | BatchCancel | BatchRetry


class RequestCounts(msgspec.Struct, frozen=True, kw_only=True):
    total: int = 0
    completed: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.completed + self.failed


class BatchInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What any client can read of a batch (the status topic's last record for its id).
    Times are Unix seconds."""

    id: Identifier
    endpoint: Endpoint
    model: str
    status: BatchStatus
    request_counts: RequestCounts
    created_at: float
    expires_at: float
    completion_window_s: float
    # Input pages (records of the input topic).
    pages: int
    # Each `fleet batch retry` starts a round: rows with a retryable error run again.
    round: int = 0
    collection: str | None = None
    dimensions: int | None = None
    input_file: str | None = None
    tenant: str | None = None
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    expired_at: float | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None
    # Why the batch failed, in words.
    errors: list[str] | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def state(self) -> BatchState:
        return BatchState(self.status)

    @property
    def ended(self) -> bool:
        return self.state.ended

    @property
    def owner(self) -> str:
        """The tenant the batch runs as (statuses written before batches had one: default)."""
        return self.tenant or DEFAULT_TENANT

    def entering(self, state: BatchState, at: float, **changes: Any) -> BatchInfo:
        """This status moved on to ``state`` at ``at`` (and ``changes``)."""
        entered = {_ENTERED_AT[state]: at}
        return msgspec.structs.replace(self, status=state.value, **entered, **changes)


def initial_info(submit: BatchSubmit) -> BatchInfo:
    """A submitted batch's status before the coordinator has read its input."""
    return BatchInfo(
        id=submit.batch_id,
        endpoint=submit.endpoint,
        model=submit.model,
        status=BatchState.VALIDATING.value,
        request_counts=RequestCounts(total=submit.rows),
        created_at=submit.created_at,
        expires_at=submit.created_at + submit.completion_window_s,
        completion_window_s=submit.completion_window_s,
        pages=submit.pages,
        collection=submit.collection,
        dimensions=submit.dimensions,
        input_file=submit.input_file,
        tenant=submit.tenant,
        metadata=submit.metadata,
    )


class RowError(msgspec.Struct, frozen=True, kw_only=True):
    # An ErrorCode value, or a StopReason's for a row the batch never ran (``stopped``).
    code: str
    message: str
    retryable: bool = False

    @property
    def stopped(self) -> StopReason | None:
        """Why the batch never ran the row; None for a row that ran."""
        return next((reason for reason in StopReason if reason == self.code), None)


class Completion(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A chat row's answer."""

    text: str
    finish_reason: str = "stop"
    tool_calls: list[Any] | None = None
    # The model that answered, when it is not the batch's (a fallback chain's substitute).
    model: str | None = None


class RowResult(msgspec.Struct, frozen=True, kw_only=True, array_like=True, omit_defaults=True):
    """One row's outcome: a vector (little-endian float32), a completion, a ranking, or an
    error."""

    custom_id: str
    embedding: bytes | None = None
    completion: Completion | None = None
    error: RowError | None = None
    usage: Usage | None = None
    request_id: str | None = None
    # A rerank row's documents, best first.
    ranking: list[RankedDocument] | None = None


class BatchResults(msgspec.Struct, frozen=True, kw_only=True):
    """A record of a batch's output topic: the outcomes of some rows of one input page in
    one round. A reader keeps, per custom_id, the outcome of the highest round (the first
    one written within a round): records written twice by a coordinator that died count once.
    """

    batch_id: Identifier
    round: Count
    page: Count
    model: str
    dimension: int = 0
    rows: list[RowResult]


_decoders: Final[dict[str, msgspec.msgpack.Decoder[Any]]] = {
    "command": msgspec.msgpack.Decoder(BatchCommand),
    "info": msgspec.msgpack.Decoder(BatchInfo),
    "page": msgspec.msgpack.Decoder(BatchInputPage),
    "results": msgspec.msgpack.Decoder(BatchResults),
}


def _decode(what: str, payload: bytes) -> Any:
    try:
        return _decoders[what].decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ContractError(f"not a batch {what} record: {exc}") from exc


def decode_command(payload: bytes) -> BatchCommand:
    result: BatchCommand = _decode("command", payload)
    return result


def decode_info(payload: bytes) -> BatchInfo:
    result: BatchInfo = _decode("info", payload)
    return result


def decode_page(payload: bytes) -> BatchInputPage:
    result: BatchInputPage = _decode("page", payload)
    return result


def decode_results(payload: bytes) -> BatchResults:
    result: BatchResults = _decode("results", payload)
    return result
