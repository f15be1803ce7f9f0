"""Chat providers: the registry and the interface."""

from collections.abc import Mapping
from typing import Any

from providers.chat.base import (
    ChatCapabilities,
    ChatDone,
    ChatEvent,
    ChatParams,
    ChatProvider,
    TextPiece,
)
from providers.registry import Registry

chat_providers: Registry[ChatProvider] = Registry("chat")


def _local_llama(config: Mapping[str, Any]) -> ChatProvider:
    from providers.chat.local_llama import create  # keeps llama_cpp out of light imports

    return create(config)


chat_providers.register("local-llama", _local_llama)

__all__ = [
    "ChatCapabilities",
    "ChatDone",
    "ChatEvent",
    "ChatParams",
    "ChatProvider",
    "TextPiece",
    "chat_providers",
]
