"""Text cut at clause ends, so that a local voice speaks the first clause while the rest
waits: audio starts before the sentence ends."""

from __future__ import annotations

import re
from typing import Final

# A clause ends at . , ; : ! ? (or a dash set apart by spaces) followed by space, or at a
# line break. Decimal points and "e.g." inside a word are not followed by a space.
_CLAUSE_END: Final = re.compile(r"(?<=[.,;:!?\u2026])\s+|\s+[\u2013\u2014-]\s+|\n+")
# Clauses shorter than this join the next one: a voice given a lone "Well," or "No."
# pauses as long as it speaks, and each piece costs a start of the voice.
MIN_CLAUSE_CHARS: Final = 24


def clauses(text: str, min_chars: int = MIN_CLAUSE_CHARS) -> list[str]:
    """``text`` in clauses, in order, none empty; together they hold all its words."""
    pieces = [p.strip() for p in _CLAUSE_END.split(text)]
    out: list[str] = []
    pending = ""
    for piece in pieces:
        if not piece:
            continue
        pending = f"{pending} {piece}" if pending else piece
        if len(pending) >= min_chars:
            out.append(pending)
            pending = ""
    if pending:
        if out and len(pending) < min_chars:
            out[-1] = f"{out[-1]} {pending}"
        else:
            out.append(pending)
    return out
