"""The SSE events of a streamed chat completion, in OpenAI's ``chat.completion.chunk``
shape: a first chunk with the assistant's role, one per text or tool-call delta, a last one
with the finish reason, with ``stream_options.include_usage`` a chunk of usage alone, and
``data: [DONE]``."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from contracts.replies import GenerateResult, TextDelta, ToolCallDelta
from producer_sdk.batch.openai_output_lines import chat_usage

DONE: Final = b"data: [DONE]\n\n"
_UNSET: Final = msgspec.UNSET


class _Function(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str | None = None
    arguments: str = ""


class _ToolCallPiece(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: _Function


class _Delta(msgspec.Struct, frozen=True, kw_only=True):
    role: str | msgspec.UnsetType = _UNSET
    content: str | msgspec.UnsetType = _UNSET
    tool_calls: list[_ToolCallPiece] | msgspec.UnsetType = _UNSET


class _Choice(msgspec.Struct, frozen=True, kw_only=True):
    index: int = 0
    delta: _Delta
    logprobs: None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[_Choice]
    # null on every chunk but the last when the caller asked for usage; absent otherwise.
    usage: Any = _UNSET


_encoder = msgspec.json.Encoder()


class ChunkWriter:
    """The events of one streamed answer, as SSE ``data:`` lines."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._id, self._created, self._model = completion_id, created, model
        self._include_usage = include_usage

    def opening(self) -> bytes:
        return self._event([_Choice(delta=_Delta(role="assistant", content=""))])

    def delta(self, event: TextDelta | ToolCallDelta) -> bytes:
        if isinstance(event, TextDelta):
            return self._event([_Choice(delta=_Delta(content=event.text))])
        piece = _ToolCallPiece(
            index=event.index,
            id=event.id,
            type="function" if event.id is not None else None,
            function=_Function(name=event.name, arguments=event.arguments),
        )
        return self._event([_Choice(delta=_Delta(tool_calls=[piece]))])

    def closing(self, result: GenerateResult) -> bytes:
        """The finish reason, then usage (when asked for) and ``[DONE]``."""
        last = self._event([_Choice(delta=_Delta(), finish_reason=result.finish_reason)])
        if not self._include_usage:
            return last + DONE
        return last + _data(self._chunk([], chat_usage(result.usage))) + DONE

    def _event(self, choices: list[_Choice]) -> bytes:
        return _data(self._chunk(choices, None if self._include_usage else _UNSET))

    def _chunk(self, choices: list[_Choice], usage: Any) -> _Chunk:
        return _Chunk(
            id=self._id, created=self._created, model=self._model, choices=choices, usage=usage
        )


def sse_event(body: bytes) -> bytes:
    """An SSE event holding a JSON body (an error, mid-stream)."""
    return b"data: " + body + b"\n\n"


def _data(chunk: _Chunk) -> bytes:
    return sse_event(_encoder.encode(chunk))
