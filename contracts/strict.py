"""The base of every record a worker or coordinator reads from someone else's hands:
requests, their parts, control and batch commands.

A field this schema version does not know is an error that names it, never dropped: a
JSON producer that sends ``logprobs`` or a message ``audio`` learns the fleet cannot
honour it instead of getting an answer without it (docs/decisions/0022). Records the
fleet writes for clients to read (replies, batch status, results) stay lenient, so a
client reads what it knows of a newer worker's answer.
"""

from __future__ import annotations

import msgspec


class StrictStruct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass
