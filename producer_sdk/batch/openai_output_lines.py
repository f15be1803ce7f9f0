"""The lines of OpenAI's batch output and error files, built from a batch's row results,
and the OpenAI response bodies they hold (the gateway answers with the same bodies).

A succeeded row is ``{"id", "custom_id", "response": {"status_code": 200, "request_id",
"body"}, "error": null}`` with an ``/v1/embeddings``, ``chat.completion`` or ``/v1/rerank``
body; a failed row has the HTTP status its error code stands for and OpenAI's error body; a
row the batch never ran has ``"response": null`` and ``"error": {"code", "message"}``. Fields
are in the order OpenAI writes them, and a row's ``id`` is the same in every download.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from contracts.batch import BatchInfo, Completion, RowError, RowResult
from contracts.embed_parts import float32_values
from contracts.errors import ContractError
from contracts.replies import RankedDocument
from contracts.usage import Usage

# The HTTP status each error code stands for, as OpenAI's API would answer it.
HTTP_STATUS: Final[Mapping[str, int]] = {
    "invalid_input": 400, "context_length_exceeded": 400, "auth": 401,
    "budget_exhausted": 402, "not_found": 404, "output_invalid": 422, "rate_limit": 429,
    "internal": 500, "unexpected_response": 500, "provider_down": 503, "timeout": 504,
}  # fmt: skip
# OpenAI's error `type` for each status (its API answers 401 and 404 as request errors too).
ERROR_TYPE: Final[Mapping[int, str]] = {
    400: "invalid_request_error", 401: "invalid_request_error", 402: "insufficient_quota",
    404: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
}  # fmt: skip


class LineError(msgspec.Struct, frozen=True):
    code: str
    message: str


class _Response(msgspec.Struct, frozen=True):
    status_code: int
    request_id: str | None
    body: Any


class OutputLine(msgspec.Struct, frozen=True):
    id: str
    custom_id: str
    response: _Response | None
    error: LineError | None


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    type: str
    param: None = None
    code: str


class _Embedding(msgspec.Struct, frozen=True, kw_only=True):
    object: str = "embedding"
    index: int = 0
    embedding: list[float] | str  # numbers, or base64 of little-endian float32 values


class _EmbeddingsUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    total_tokens: int


class _EmbeddingsBody(msgspec.Struct, frozen=True, kw_only=True):
    object: str = "list"
    data: list[_Embedding]
    model: str
    usage: _EmbeddingsUsage


class _Function(msgspec.Struct, frozen=True):
    name: str
    arguments: str


class _ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str = "function"
    function: _Function


class _Message(msgspec.Struct, frozen=True, kw_only=True):
    role: str = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[_ToolCall] | msgspec.UnsetType = msgspec.UNSET  # absent without calls


class _Choice(msgspec.Struct, frozen=True, kw_only=True):
    index: int = 0
    message: _Message
    logprobs: None = None
    finish_reason: str


class _ChatUsage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, int] | msgspec.UnsetType = msgspec.UNSET
    completion_tokens_details: dict[str, int] | msgspec.UnsetType = msgspec.UNSET


class _ChatCompletion(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[_Choice]
    usage: _ChatUsage


class _Ranked(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    index: int
    relevance_score: float
    document: dict[str, str] | None = None


class _RerankUsage(msgspec.Struct, frozen=True, kw_only=True):
    total_tokens: int


class _RerankBody(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    model: str
    results: list[_Ranked]
    usage: _RerankUsage


def succeeded_line(batch: BatchInfo, row: RowResult, model: str) -> OutputLine:
    """A row that has a vector, a completion or a ranking; ``model`` is the model that
    answered it."""
    body: _ChatCompletion | _EmbeddingsBody | _RerankBody
    if row.completion:
        body = _chat(batch, row, row.completion, model)
    elif row.ranking is not None:
        tokens = row.usage.total_tokens if row.usage else 0
        body = rerank_body(_line_id(batch, row.custom_id), model, row.ranking, tokens)
    else:
        body = _vectors(row, model)
    response = _Response(status_code=200, request_id=row.request_id, body=body)
    return OutputLine(_line_id(batch, row.custom_id), row.custom_id, response, None)


def failed_line(batch: BatchInfo, row: RowResult) -> OutputLine:
    """A row that ran and ended in an error."""
    assert row.error is not None
    status = HTTP_STATUS.get(row.error.code, 500)
    error = _ErrorBody(
        message=row.error.message,
        type=error_type(status),
        code=row.error.code,
    )
    response = _Response(status_code=status, request_id=row.request_id, body={"error": error})
    return OutputLine(_line_id(batch, row.custom_id), row.custom_id, response, None)


def never_ran_line(batch: BatchInfo, custom_id: str, error: RowError) -> OutputLine:
    """A row the batch never ran (it was cancelled, expired or failed before it)."""
    line_error = LineError(code=error.code, message=error.message)
    return OutputLine(_line_id(batch, custom_id), custom_id, None, line_error)


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    return ERROR_TYPE.get(status, "server_error")


def embeddings_body(
    embeddings: Sequence[list[float] | str], model: str, prompt_tokens: int
) -> _EmbeddingsBody:
    """A ``/v1/embeddings`` answer: one embedding per input, in input order."""
    return _EmbeddingsBody(
        data=[_Embedding(index=i, embedding=e) for i, e in enumerate(embeddings)],
        model=model,
        usage=_EmbeddingsUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens),
    )


def rerank_body(
    answer_id: str, model: str, ranking: Sequence[RankedDocument], total_tokens: int
) -> _RerankBody:
    """A ``/v1/rerank`` answer, Cohere's v2 and Jina's v1 shape: the results best first,
    each document (when the caller asked for it) a string as ``{"text": ...}``, an object
    as it was sent."""
    return _RerankBody(
        id=answer_id,
        model=model,
        results=[
            _Ranked(
                index=r.index,
                relevance_score=r.relevance_score,
                document={"text": r.document} if isinstance(r.document, str) else r.document,
            )
            for r in ranking
        ],
        usage=_RerankUsage(total_tokens=total_tokens),
    )


def chat_completion(
    completion_id: str,
    created: int,
    completion: Completion,
    model: str,
    usage: Usage | None,
    *,
    where: str,
) -> _ChatCompletion:
    """A ``chat.completion`` answer; ``model`` is the one asked for (the completion's own
    wins where a fallback chain's substitute answered); ``where`` names the answer in an
    error (a row, a request)."""
    calls = [_tool_call(where, c) for c in completion.tool_calls or ()]
    # As OpenAI answers: a turn of tool calls alone has no content.
    content = completion.text if completion.text or not calls else None
    message = _Message(content=content, tool_calls=calls or msgspec.UNSET)
    return _ChatCompletion(
        id=completion_id,
        created=created,
        model=completion.model or model,
        choices=[_Choice(message=message, finish_reason=completion.finish_reason)],
        usage=chat_usage(usage),
    )


def _vectors(row: RowResult, model: str) -> _EmbeddingsBody:
    if row.embedding is None:
        raise ContractError(f"row {row.custom_id!r} has no vector, completion or ranking")
    prompt = row.usage.prompt_tokens if row.usage else 0
    return embeddings_body([float32_values(row.embedding)], model, prompt)


def _chat(batch: BatchInfo, row: RowResult, completion: Completion, model: str) -> _ChatCompletion:
    created = batch.in_progress_at or batch.created_at
    completion_id = "chatcmpl-" + _digest(batch, row.custom_id)
    where = f"row {row.custom_id!r}"
    return chat_completion(completion_id, int(created), completion, model, row.usage, where=where)


def _digest(batch: BatchInfo, custom_id: str) -> str:
    return hashlib.sha256(f"{batch.id}\0{custom_id}".encode()).hexdigest()[:24]


def _line_id(batch: BatchInfo, custom_id: str) -> str:
    """Stable: a batch's row has the same id in every download."""
    return "batch_req_" + _digest(batch, custom_id)


def _tool_call(where: str, call: object) -> _ToolCall:
    """A ToolCall as the coordinator keeps it (``id``, ``name``, ``arguments``), in OpenAI's
    shape."""
    if not isinstance(call, dict):
        raise ContractError(f"{where}: a tool call is not an object: {call!r}")
    try:
        function = _Function(name=str(call["name"]), arguments=str(call.get("arguments", "")))
        return _ToolCall(id=str(call["id"]), function=function)
    except KeyError as exc:
        raise ContractError(f"{where}: a tool call has no {exc.args[0]!r}") from exc


def chat_usage(usage: Usage | None) -> _ChatUsage:
    if usage is None:
        return _ChatUsage()
    cached, reasoning = usage.cached_tokens, usage.reasoning_tokens
    return _ChatUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=msgspec.UNSET if cached is None else {"cached_tokens": cached},
        completion_tokens_details=(
            msgspec.UNSET if reasoning is None else {"reasoning_tokens": reasoning}
        ),
    )
