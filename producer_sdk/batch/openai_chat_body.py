"""A chat row's body, from the OpenAI batch input shape to the contract's ChatBody: OpenAI's
spellings of tools, tool choices and tool calls taken, and a field the fleet would not honour
refused (naming the row and the field), never dropped. The gateway reads its request
bodies with the same function."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from contracts.batch import ChatBody
from contracts.errors import ContractError

# /v1/chat/completions fields the fleet takes only at the value that changes nothing.
_CHAT_DEFAULT_ONLY: Final[Mapping[str, tuple[object, str]]] = {
    "n": (1, "one row is one answer"),
    "stream": (False, "a batch row's answer is not streamed"),
    "logprobs": (False, "the fleet returns no log probabilities"),
}
_CHAT_FIELDS: Final = frozenset(ChatBody.__struct_fields__)
# Fields of an answer's message that OpenAI's SDKs send back when a caller appends the
# message to the conversation as it came (the tools loop): taken off while they hold
# nothing; holding something, they stay, and are refused as any unknown field is.
_ANSWER_ONLY: Final = frozenset({"refusal", "annotations", "audio", "function_call"})
# Where msgspec's message says the bad value is: "... - at `$.messages[0].role`", or
# "Object contains unknown field `user`".
_AT_PATH: Final = re.compile(r" - at `\$\.?([^`]*)`$")
_UNKNOWN_FIELD: Final = re.compile(r"^Object contains unknown field `([^`]*)`")


class ChatBodyError(ContractError):
    """A body the fleet refuses; ``param`` is the field at fault (``messages[0].role``),
    as OpenAI's error body names it, or None where no one field is."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


def chat_body(where: str, body: dict[str, Any]) -> ChatBody:
    for field, (harmless, why) in _CHAT_DEFAULT_ONLY.items():
        if field in body:
            value = body.pop(field)
            if value != harmless or type(value) is not type(harmless):
                raise ChatBodyError(
                    f"{where}: body field `{field}` must be {_json(harmless)} if given, not "
                    f"{_json(value)}: {why}",
                    field,
                )
    if "max_completion_tokens" in body:  # OpenAI's newer name for max_tokens
        tokens = body.pop("max_completion_tokens")
        if body.setdefault("max_tokens", tokens) != tokens:
            raise ChatBodyError(
                f"{where}: `max_tokens` and `max_completion_tokens` differ", "max_tokens"
            )
    unknown = sorted(set(body) - _CHAT_FIELDS)
    if unknown:
        raise ChatBodyError(
            f"{where}: body field `{unknown[0]}` is not one the fleet honours in a chat body "
            "(refused rather than dropped)",
            unknown[0],
        )
    try:
        return msgspec.convert(_from_openai_shapes(where, body), ChatBody)
    except msgspec.ValidationError as exc:
        raise ChatBodyError(f"{where}: body: {exc}", error_param(exc)) from exc


def error_param(exc: msgspec.ValidationError) -> str | None:
    """The field msgspec's message names, in OpenAI's spelling of a ``param``."""
    found = _AT_PATH.search(str(exc)) or _UNKNOWN_FIELD.search(str(exc))
    return found.group(1) or None if found else None


def _from_openai_shapes(where: str, body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's spellings where the contract's differ: a function tool, a named
    tool_choice and an assistant's tool calls nest their name in a ``function`` object, an
    assistant turn of tool calls alone may have ``content: null``, and ``stop`` may be one
    string. The contract's own spellings pass as they are."""
    if isinstance(body.get("stop"), str):
        body["stop"] = [body["stop"]]
    if isinstance(body.get("tools"), list):
        body["tools"] = [_tool(where, i, tool) for i, tool in enumerate(body["tools"])]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        body["tool_choice"] = _function(where, "tool_choice", choice, {"name"})
    if isinstance(body.get("messages"), list):
        body["messages"] = [_message(where, i, m) for i, m in enumerate(body["messages"])]
    return body


def _tool(where: str, index: int, tool: object) -> object:
    if not isinstance(tool, dict) or "type" not in tool:
        return tool  # the contract's {name, description, parameters}, checked by convert
    if tool["type"] != "function":
        raise ChatBodyError(
            f"{where}: `tools[{index}]` is of type {_json(tool['type'])}: the fleet serves "
            "function tools only",
            f"tools[{index}].type",
        )
    fields = {"name", "description", "parameters", "strict"}
    function = _function(where, f"tools[{index}]", tool, fields)
    if function.pop("strict", False) is not False:
        raise ChatBodyError(
            f"{where}: `tools[{index}].function.strict` is not honoured (the arguments are "
            "not constrained to the schema): remove it",
            f"tools[{index}].function.strict",
        )
    return function


def _message(where: str, index: int, message: object) -> object:
    if not isinstance(message, dict):
        return message
    message = dict(message)
    for field in _ANSWER_ONLY & message.keys():
        if message[field] in (None, []):
            del message[field]
    if not isinstance(message.get("tool_calls"), list):
        return message
    calls = []
    for i, call in enumerate(message["tool_calls"]):
        if isinstance(call, dict) and "function" in call:
            label = f"messages[{index}].tool_calls[{i}]"
            function = _function(where, label, call, {"name", "arguments"})
            call = {"id": call.get("id"), **function}
        calls.append(call)
    message["tool_calls"] = calls
    if message.get("content") is None:
        message["content"] = ""
    return message


def _function(where: str, label: str, holder: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """The ``function`` object of an OpenAI tool, tool choice or tool call, whose other
    keys may only be ``type: "function"`` (and a call's ``id``)."""
    if holder.get("type", "function") != "function":
        raise ChatBodyError(f'{where}: `{label}.type` must be "function"', f"{label}.type")
    if other := sorted(set(holder) - {"type", "function", "id"}):
        param = f"{label}.{other[0]}"
        raise ChatBodyError(f"{where}: `{param}` is not one the fleet honours", param)
    function = holder.get("function")
    if not isinstance(function, dict):
        param = f"{label}.function"
        raise ChatBodyError(f"{where}: `{param}` must be an object", param)
    if other := sorted(set(function) - fields):
        param = f"{label}.function.{other[0]}"
        raise ChatBodyError(f"{where}: `{param}` is not one the fleet honours", param)
    return dict(function)


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode()
