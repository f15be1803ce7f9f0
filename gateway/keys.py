"""Bearer keys to tenants: the ``Authorization: Bearer <key>`` of a request names the tenant
it runs as. Keys are compared in constant time, all of them every time, so neither a
match's position nor a near miss shows in the answer's timing."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from contracts.errors import ConfigError
from contracts.secrets import Secret
from gateway.errors import OpenAIError

_SCHEME = "bearer "


class KeyRing:
    def __init__(self, keys: Mapping[str, Secret]) -> None:
        """``keys``: each tenant's key (a tenant without one cannot call the gateway)."""
        self._keys = [(key.reveal().encode(), tenant) for tenant, key in keys.items() if key]
        if len({key for key, _ in self._keys}) < len(self._keys):
            raise ConfigError("two tenants have the same API key: each needs its own")

    def tenant(self, authorization: str | None) -> str:
        """The tenant whose key the header holds; OpenAIError 401 when none does."""
        if authorization is None or not authorization.lower().startswith(_SCHEME):
            raise _unauthorized("no API key was given: send `Authorization: Bearer <key>`")
        given = authorization[len(_SCHEME) :].strip().encode()
        found = None
        for key, tenant in self._keys:
            if hmac.compare_digest(given, key) and found is None:
                found = tenant
        if found is None:
            raise _unauthorized("the API key is not one this gateway knows")
        return found


def _unauthorized(message: str) -> OpenAIError:
    return OpenAIError(401, message, code="invalid_api_key")
