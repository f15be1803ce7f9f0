"""Fields every request carries: identity, tenant, where to reply, deadline, attempt."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from contracts.names import DEFAULT_TENANT, SCHEMA_VERSION
from contracts.strict import StrictStruct

# Ids end up in Redis keys and topic names: keep them to a safe alphabet. The one rule for
# request ids, tenants and client ids: workers decode with it, the SDK checks with it.
IDENTIFIER_MAX_CHARS: Final = 128
IDENTIFIER_RULE: Final = f"1 to {IDENTIFIER_MAX_CHARS} of the characters A-Z a-z 0-9 _ . -"
Identifier = Annotated[str, msgspec.Meta(pattern=rf"^[A-Za-z0-9_.\-]{{1,{IDENTIFIER_MAX_CHARS}}}$")]
# What Kafka allows in a topic name.
TopicName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._\-]{1,249}$")]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
# Model, provider, store and collection names: they come back in error messages and logs.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ReplyAddress(StrictStruct, frozen=True):
    """Where the worker sends the reply chunks of one request: a topic (and a partition, or
    the one the request id's key hashes to). On a reply topic that several clients share,
    ``client`` names the one that asked; workers put it in the ``fleet-reply-client``
    header of every reply."""

    topic: TopicName
    partition: Count | None = None
    client: Identifier | None = None


class Request(StrictStruct, frozen=True, tag_field="kind"):
    """Base of all requests; subclasses set ``tag`` so one decoder picks the right class."""

    request_id: Identifier
    tenant: Identifier = DEFAULT_TENANT
    reply_to: ReplyAddress | None = None
    # Absolute deadline, Unix epoch milliseconds; a worker does not start a job past it.
    deadline_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # The producer's first attempt number (0). Replies carry the worker's count instead: one
    # more for each redelivery through a retry tier, and (with the ledger) for each takeover
    # of a job whose worker died; the SDK announces a restart when it goes up.
    attempt: Count = 0
    schema_version: Count = SCHEMA_VERSION


class RequestHead(msgspec.Struct, kw_only=True):
    """The part of a request needed to answer it, decoded leniently from a bad message."""

    request_id: Identifier | None = None
    reply_to: ReplyAddress | None = None
    attempt: Count = 0


class RequestDeadlineField(msgspec.Struct):
    """Only a request's deadline, read without decoding the rest (a worker deciding whether
    a record may still be parked, decision 0045)."""

    deadline_ms: int | None = None


def is_identifier(value: str) -> bool:
    """Whether ``value`` is an id a worker reads (the rule every ``Identifier`` field has)."""
    try:
        msgspec.convert(value, Identifier)
    except msgspec.ValidationError:
        return False
    return True
