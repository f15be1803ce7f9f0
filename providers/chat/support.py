"""Whether a chat provider can honour a call as asked: what it cannot do is refused with
invalid_input naming it, before any request is made, never silently left out."""

from __future__ import annotations

from typing import get_args

from contracts.content import images_in
from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from contracts.response_format import json_format, type_name
from providers.chat.base import ChatCapabilities, ChatOption, ChatParams
from providers.errors import ProviderError

OPTIONS: tuple[ChatOption, ...] = get_args(ChatOption)


def options_set(params: ChatParams) -> list[ChatOption]:
    """The optional fields this call sets, in a fixed order."""
    return [option for option in OPTIONS if getattr(params, option) is not None]


def uses_tools(messages: list[ChatMessage], params: ChatParams) -> bool:
    """Tools offered, a tool choice, or a conversation holding tool calls or results (which
    a provider without tools could only drop)."""
    if params.tools or params.tool_choice is not None:
        return True
    return any(m.role == "tool" or m.tool_calls for m in messages)


def uses_images(messages: list[ChatMessage]) -> bool:
    return any(images_in(m.content) for m in messages)


def uses_names(messages: list[ChatMessage]) -> bool:
    return any(m.name is not None for m in messages)


def unsupported(
    capabilities: ChatCapabilities, messages: list[ChatMessage], params: ChatParams
) -> str | None:
    """Why a provider with these capabilities cannot honour the call; None when it can."""
    capabilities = capabilities.for_model(params.model)  # as the model catalogue narrows it
    reasons: list[str] = []
    if not capabilities.tools and uses_tools(messages, params):
        reasons.append("it does not support tools (tools, tool_choice, tool calls or results)")
    if not capabilities.vision and uses_images(messages):
        reasons.append("it does not support images (image_url content parts)")
    if not capabilities.names and uses_names(messages):
        reasons.append("it cannot carry speaker names (the name of a message)")
    wanted = json_format(params.response_format)
    if not capabilities.json_schema and wanted is not None:
        reasons.append(f"it does not support response_format {type_name(wanted)}")
    missing = [o for o in options_set(params) if o not in capabilities.options]
    if missing:
        reasons.append(f"it does not support {', '.join(missing)}")
    return "; ".join(reasons) or None


def require_support(
    capabilities: ChatCapabilities,
    messages: list[ChatMessage],
    params: ChatParams,
    *,
    provider: str,
    op: str,
) -> None:
    """Raise invalid_input (not retryable: another try gets the same) when the provider
    cannot honour the call."""
    reason = unsupported(capabilities, messages, params)
    if reason is not None:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"provider {provider!r} cannot take this request: {reason}; leave it out or "
            "send the request to a provider that has it",
        )
