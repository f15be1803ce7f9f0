"""Tool calls put together from the pieces a provider's stream gives, in one place for
every provider."""

from __future__ import annotations

from contracts.generate import ToolCall
from providers.chat.base import ToolCallPiece


class _Parts:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class ToolCallAssembler:
    """Collects the pieces of each call by index; ``calls`` gives them whole, in order."""

    def __init__(self) -> None:
        self._parts: dict[int, _Parts] = {}

    def add(self, piece: ToolCallPiece) -> ToolCallPiece:
        """Take one piece; returns it as it goes on to the caller: the id and name only the
        first time they appear (some servers repeat them on every piece)."""
        parts = self._parts.setdefault(piece.index, _Parts())
        new_id = piece.id if piece.id and not parts.id else None
        new_name = piece.name if piece.name and not parts.name else None
        if new_id:
            parts.id = new_id
        if new_name:
            parts.name = new_name
        if piece.arguments:
            parts.arguments.append(piece.arguments)
        if (new_id, new_name) == (piece.id, piece.name):
            return piece
        return ToolCallPiece(index=piece.index, id=new_id, name=new_name, arguments=piece.arguments)

    def calls(self) -> list[ToolCall] | None:
        """Every call begun, with "{}" for one whose arguments never came; None for none."""
        calls = [
            ToolCall(id=p.id, name=p.name, arguments="".join(p.arguments) or "{}")
            for _, p in sorted(self._parts.items())
        ]
        return calls or None
