"""``POST /v1/chat/completions``: an OpenAI chat call as a fleet generate job, answered as
one ``chat.completion`` or streamed as ``chat.completion.chunk`` events."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from contracts.batch import Completion
from gateway.chat_chunks import ChunkWriter, sse_event
from gateway.chat_request import ChatCall
from gateway.errors import FLEET_FAILURES, fleet_error, from_fleet
from gateway.event_stream import EventStream
from gateway.overhead import awaiting_fleet
from gateway.restarts import Diverged, SentText, restart_error
from producer_sdk import (
    FleetClient,
    GenerateEvent,
    GenerateResult,
    StreamRestarted,
)
from producer_sdk.batch.openai_output_lines import chat_completion


async def complete(
    request: Request, client: FleetClient, call: ChatCall, request_id: str
) -> Response:
    """The whole answer at once; the job is cancelled if the client leaves before it."""
    answer = client.generate(
        call.body.messages, model=call.model, request_id=request_id, **call.options
    )
    result = await from_fleet(awaiting_fleet(request, answer))
    completion = Completion(
        text=result.text,
        finish_reason=result.finish_reason,
        tool_calls=msgspec.to_builtins(result.tool_calls),
        model=result.model,
    )
    body = chat_completion(
        _completion_id(request_id),
        int(time.time()),
        completion,
        call.model,
        result.usage,
        where=f"request {request_id}",
    )
    return Response(msgspec.json.encode(body), media_type="application/json")


async def stream(
    request: Request, client: FleetClient, call: ChatCall, request_id: str
) -> Response:
    """SSE events as the model writes. The first event is awaited before the response
    starts, so a job that fails at once (an unknown tool, a refused option) is answered
    with its HTTP status, not a 200 that carries an error."""
    events = client.stream_generate(
        call.body.messages, model=call.model, request_id=request_id, **call.options
    )
    writer = ChunkWriter(
        _completion_id(request_id), int(time.time()), call.model, call.include_usage
    )
    first = await from_fleet(awaiting_fleet(request, anext(events)))
    return EventStream(_events(writer, first, events))


async def _events(
    writer: ChunkWriter, first: GenerateEvent, events: AsyncGenerator[GenerateEvent, None]
) -> AsyncGenerator[bytes, None]:
    sent = SentText()
    yield writer.opening()
    async with contextlib.aclosing(events):
        try:
            item = first
            while True:
                if isinstance(item, GenerateResult):
                    sent.check_final(item.text)
                    yield writer.closing(item)
                    return
                if isinstance(item, StreamRestarted):
                    sent.restarted()
                elif (new := sent.to_send(item)) is not None:
                    yield writer.delta(new)
                item = await anext(events)
        except FLEET_FAILURES as exc:
            yield sse_event(fleet_error(exc).body())
        except Diverged as exc:
            yield sse_event(restart_error(exc).body())


def _completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id
