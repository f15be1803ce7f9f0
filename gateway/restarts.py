"""What a streamed HTTP answer does when its job's stream restarts (a worker died and the
job was redone, or a stored answer was replayed as a new attempt): the client cannot be
told to forget text it already has, so the new attempt's text is sent only past what the
client holds, as long as it repeats that text (a replay does; so does greedy decoding).
When it departs from it, the stream cannot go on honestly."""

from __future__ import annotations

from contracts.replies import TextDelta, ToolCallDelta
from gateway.errors import OpenAIError


class Diverged(Exception):
    """The redone answer differs from the text the client already has."""


class SentText:
    """The text a client has been sent, and, after a restart, how far the new attempt has
    caught up with it."""

    def __init__(self) -> None:
        self._sent = ""
        self._tools_sent = False
        self._redone: str | None = None  # the new attempt's text, while it is behind

    @property
    def text(self) -> str:
        """The text the client has been sent."""
        return self._sent

    @property
    def anything_sent(self) -> bool:
        return bool(self._sent) or self._tools_sent

    def restarted(self) -> None:
        """A new attempt begins; Diverged if the client holds tool calls (not repeatable)."""
        if self._tools_sent:
            raise Diverged("tool calls were sent before the job was redone")
        if self._sent:
            self._redone = ""

    def to_send(self, delta: TextDelta | ToolCallDelta) -> TextDelta | ToolCallDelta | None:
        """What of ``delta`` the client does not have yet (None: nothing)."""
        if isinstance(delta, ToolCallDelta):
            if self._redone is not None:  # the redo must first repeat the text sent
                raise Diverged("the redone answer calls a tool where text was sent")
            self._tools_sent = True
            return delta
        if self._redone is None:
            self._sent += delta.text
            return delta
        self._redone += delta.text
        if self._sent.startswith(self._redone):
            return None  # still repeating what the client has
        if not self._redone.startswith(self._sent):
            raise Diverged("the redone answer differs from the text already sent")
        new = self._redone[len(self._sent) :]
        self._sent, self._redone = self._redone, None
        return TextDelta(
            request_id=delta.request_id, attempt=delta.attempt, seq=delta.seq, text=new
        )

    def check_final(self, text: str) -> None:
        """Diverged if the final answer does not extend what the client was sent."""
        if self._redone is not None and not text.startswith(self._sent):
            raise Diverged("the redone answer differs from the text already sent")


def restart_error(exc: Diverged) -> OpenAIError:
    """The error event that ends a stream whose redone job departed from what was sent."""
    return OpenAIError(
        503,
        f"the job was redone from the start after its worker failed, and {exc}: retry the "
        "request with the same Idempotency-Key to get the whole answer",
        code="stream_restarted",
    )
