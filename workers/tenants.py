"""Whether a record really comes from the tenant it names: the one check the runner (for
requests) and the control listener (for cancels) both make."""

from __future__ import annotations

from contracts.names import Header
from contracts.signing import verify
from transport.records import Record, header


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
