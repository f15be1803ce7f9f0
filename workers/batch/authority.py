"""Whether a batch command may act: sent by the tenant it names (its signature holds, where
the coordinators have tenant keys), and, for a batch that exists, by that batch's tenant.
A batch belongs to the tenant of its submit for good (decision 0031)."""

from __future__ import annotations

from contracts.batch import BatchCommand, BatchInfo
from transport.records import Record
from workers.tenants import unverified


def refusal(
    command: BatchCommand,
    record: Record,
    known: BatchInfo | None,
    keys: dict[str, bytes] | None,
) -> str | None:
    """Why ``command`` (read from ``record``) must not act on its batch (whose status is
    ``known``, if any), or None when it may. ``keys``: None when tenants are taken as
    declared, which still keeps one tenant's command off another tenant's batch by mistake."""
    if keys is not None and (why := unverified(keys, command.tenant, record)) is not None:
        return why
    if known is not None and known.owner != command.tenant:
        return f"batch {command.batch_id!r} belongs to another tenant than {command.tenant!r}"
    return None
