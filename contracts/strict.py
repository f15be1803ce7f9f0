"""The base of every record a worker or coordinator reads from someone else's hands:
requests, their parts, control and batch commands.

A field this schema version does not know is an error that names it, never dropped: a
JSON producer that sends ``logprobs`` or a message ``audio`` learns the fleet cannot
honour it instead of getting an answer without it (docs/decisions/0022). Records the
fleet writes for clients to read (replies, batch status, results) stay lenient, so a
client reads what it knows of a newer worker's answer.
"""

from __future__ import annotations

from typing import Any

import msgspec


class StrictStruct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


def defstruct_fields(struct: type[msgspec.Struct]) -> list[tuple[str, Any] | tuple[str, Any, Any]]:
    """``struct``'s fields as ``msgspec.defstruct`` takes them (name, type and default): to
    add one Struct's fields onto another base, as msgspec cannot combine two bases that both
    hold fields (their slots clash)."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for info in msgspec.structs.fields(struct):
        if info.required:
            fields.append((info.name, info.type))
        elif info.default_factory is not msgspec.NODEFAULT:
            fields.append(
                (info.name, info.type, msgspec.field(default_factory=info.default_factory))
            )
        else:
            fields.append((info.name, info.type, info.default))
    return fields
