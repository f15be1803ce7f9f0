"""Tenant signatures: a producer signs each request's bytes with its tenant's key, and a
worker that knows the keys runs a request only for the tenant whose key signed it, so the
``tenant`` field cannot be forged by whoever may write to a request topic.

HMAC-SHA256 over the exact message bytes, hex, in the ``fleet-tenant-signature`` header.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).hexdigest().encode()


def verify(key: bytes, payload: bytes, signature: bytes | None) -> bool:
    return signature is not None and hmac.compare_digest(sign(key, payload), signature)
