"""Chat providers: the registry and the interface."""

from providers.chat.base import (
    ChatCapabilities,
    ChatDone,
    ChatEvent,
    ChatOption,
    ChatParams,
    ChatProvider,
    TextPiece,
    ToolCallPiece,
)
from providers.registry import Registry

chat_providers: Registry[ChatProvider] = Registry("chat")
chat_providers.register_lazy("local-llama", "providers.chat.local_llama:create")
chat_providers.register_lazy("openai", "providers.chat.openai_compat:create")
chat_providers.register_lazy("anthropic", "providers.chat.anthropic:create")
chat_providers.register_lazy("fallback", "providers.chat.fallback:create")

__all__ = [
    "ChatCapabilities",
    "ChatDone",
    "ChatEvent",
    "ChatOption",
    "ChatParams",
    "ChatProvider",
    "TextPiece",
    "ToolCallPiece",
    "chat_providers",
]
