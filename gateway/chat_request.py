"""A ``POST /v1/chat/completions`` body, read into what FleetClient sends: the fields the
batch path maps from OpenAI's shapes (producer_sdk/batch/openai_chat_body.py), plus the
ones only a live call has (``model``, ``stream``, ``stream_options``)."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.batch import ChatBody
from contracts.generate import chat_options
from gateway.errors import OpenAIError, invalid_request
from producer_sdk.batch.openai_chat_body import ChatBodyError, chat_body
from producer_sdk.options import GenerateOptions


class ChatCall(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    stream: bool
    include_usage: bool  # stream_options.include_usage: usage in a last chunk of its own
    body: ChatBody

    @property
    def options(self) -> GenerateOptions:
        """The body's chat options, as FleetClient's generate takes them."""
        options: GenerateOptions = chat_options(self.body)  # type: ignore[assignment]
        return options


def read_chat_call(raw: bytes) -> ChatCall:
    body = json_object(raw)
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        raise invalid_request("`model` is required: a model's name", "model")
    stream = body.pop("stream", False)
    if not isinstance(stream, bool):
        raise invalid_request("`stream` must be true or false", "stream")
    include_usage = _include_usage(body.pop("stream_options", None), stream)
    try:
        chat = chat_body("request", body)
    except ChatBodyError as exc:
        raise invalid_request(str(exc), exc.param) from exc
    return ChatCall(model=model, stream=stream, include_usage=include_usage, body=chat)


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise invalid_request(f"the body is not valid JSON: {exc}", None) from exc
    if not isinstance(body, dict):
        raise invalid_request("the body must be a JSON object", None)
    return body


def _include_usage(options: object, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise invalid_request(
            "`stream_options` is only allowed with `stream: true`", "stream_options"
        )
    if not isinstance(options, dict):
        raise invalid_request("`stream_options` must be an object", "stream_options")
    if other := sorted(set(options) - {"include_usage"}):
        param = f"stream_options.{other[0]}"
        raise OpenAIError(400, f"`{param}` is not one the fleet honours", param=param)
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise invalid_request(
            "`stream_options.include_usage` must be true or false", "stream_options.include_usage"
        )
    return include
