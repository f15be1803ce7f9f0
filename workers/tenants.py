"""Whether a record really comes from the tenant it names: the one check the runner (for
requests), the control listener (for cancels) and the batch coordinator (for batch
commands) all make; and the one warning a worker gives when it makes none."""

from __future__ import annotations

import logging

from contracts.names import Header
from contracts.signing import verify
from transport.records import Record, header

log = logging.getLogger(__name__)


def unverified(keys: dict[str, bytes], tenant: str, record: Record) -> str | None:
    """Why ``record`` cannot be taken as ``tenant``'s, or None when its signature holds."""
    key = keys.get(tenant)
    signature = header(record, Header.TENANT_SIGNATURE)
    if key is None:
        return f"tenant {tenant!r} is not configured on this worker"
    if signature is None:
        return f"the message is not signed, and tenant {tenant!r} requires a signature"
    if not verify(key, record.value or b"", signature.encode()):
        return f"the message's signature does not match tenant {tenant!r}'s key"
    return None


def warn_if_declared(keys: dict[str, bytes] | None, worker: str) -> None:
    """Say once, at start, that ``worker`` takes tenants as declared (``keys`` is None): any
    producer that may write to its topics may name any tenant, and read or change what
    is that tenant's (docs/operations.md, "Tenants")."""
    if keys is None:
        log.warning(
            "%s: tenants are taken as declared: any producer may act as any tenant (its "
            "memory, stored answers, vectors, batches, cancels); configure [tenant_keys] "
            "(with verify_tenants not false) to verify them", worker,
        )  # fmt: skip
