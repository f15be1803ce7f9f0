"""A chat provider whose behaviour a test scripts: the far side of the model, not Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from contracts import ChatMessage, ErrorCode, Usage
from providers.chat import ChatCapabilities, ChatDone, ChatEvent, ChatParams, TextPiece
from providers.errors import ProviderError


class ScriptedChat:
    name = "scripted"

    def __init__(
        self,
        *,
        pieces: tuple[str, ...] = ("Hello", ", ", "world"),
        delay_s: float = 0.0,
        piece_delay_s: float = 0.0,
        failures: list[ErrorCode] | None = None,
        retry_after_s: float | None = None,
        echo: bool = False,  # answer with the last message's text (then the pieces)
    ) -> None:
        self.echo = echo
        self.pieces = pieces
        self.delay_s = delay_s
        self.piece_delay_s = piece_delay_s
        self.cancelled = 0
        self.cancelled_at: float | None = None  # time.monotonic() of the last cancel
        self.failures = list(failures or [])
        self.retry_after_s = retry_after_s
        self.calls = 0
        # When set: awaited after the first piece, so a test holds answers in flight.
        self.gate: asyncio.Event | None = None

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(models=("scripted-model",))

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        self.calls += 1
        if self.failures:
            code = self.failures.pop(0)
            raise ProviderError(
                code, "scripted.chat", "scripted failure", retry_after_s=self.retry_after_s
            )
        try:
            await asyncio.sleep(self.delay_s)
            if self.echo:
                yield TextPiece(str(messages[-1].content))
            for number, piece in enumerate(self.pieces):
                yield TextPiece(piece)
                if number == 0 and self.gate is not None:
                    await self.gate.wait()
                await asyncio.sleep(self.piece_delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            self.cancelled_at = time.monotonic()
            raise
        yield ChatDone(
            finish_reason="stop", usage=Usage(input_tokens=1, output_tokens=len(self.pieces))
        )

    async def load(self) -> None:
        return None

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None
