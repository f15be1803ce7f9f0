"""`python -m tests.integration.crashing_worker worker generate ...`: the real worker command
with one more chat provider, ``crash-on-marker``, that kills its own process (SIGSEGV, as a
native crash in a model library would) when a prompt holds ``CRASH_MARKER``."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Mapping
from typing import Any

from contracts import ChatMessage
from providers.chat import ChatEvent, ChatParams, chat_providers
from providers.shared import Shared
from tests.integration.scripted_chat import ScriptedChat
from workers.ops.cli import main

CRASH_MARKER = "<<crash this worker>>"


class CrashOnMarkerChat(ScriptedChat):
    name = "crash-on-marker"

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        if any(CRASH_MARKER in m.content for m in messages):
            os.kill(os.getpid(), signal.SIGSEGV)
        async for event in super().stream_chat(messages, params):
            yield event


def _create(config: Mapping[str, Any], shared: Shared) -> CrashOnMarkerChat:
    return CrashOnMarkerChat()


if __name__ == "__main__":
    chat_providers.register("crash-on-marker", _create)
    raise SystemExit(main())
