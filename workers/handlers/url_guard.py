"""Which http(s) URLs a worker may fetch for a caller (``audio_url``): hosts from an
allowlist when one is configured, and never an address inside the worker's own network
(private, loopback, link-local such as the cloud metadata service at 169.254.169.254,
multicast, reserved), checked after DNS resolution for the first URL and every redirect.

What is not covered: a name that resolves differently between this check and the fetch
(DNS rebinding within the resolver's TTL); put the workers behind an egress proxy where
that matters.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from contracts.errors import ErrorCode
from providers.errors import ProviderError

Resolve = Callable[[str, int], Awaitable[list[str]]]

_OP = "transcribe.audio"


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, as strings."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _inward(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


class UrlGuard:
    def __init__(
        self,
        allowed_hosts: Sequence[str] = (),
        *,
        allow_private: bool = False,
        resolve: Resolve = resolve_host,
    ) -> None:
        # "example.com" allows that host; ".example.com" allows every host under it.
        self._hosts = [h.lower() for h in allowed_hosts]
        self._allow_private = allow_private
        self._resolve = resolve

    async def check(self, url: str) -> None:
        """Raise invalid_input, naming the reason, unless ``url`` may be fetched."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise self._refused(url, "only http(s) URLs with a host can be fetched")
        if self._hosts and not any(
            host == h or (h.startswith(".") and host.endswith(h)) for h in self._hosts
        ):
            raise self._refused(url, f"host {host!r} is not in audio_hosts")
        if self._allow_private:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise ProviderError(
                ErrorCode.INVALID_INPUT, _OP, f"audio_url {url!r}: cannot resolve {host!r}: {exc}"
            ) from exc
        inward = sorted({a for a in addresses if _inward(a)})
        if inward or not addresses:
            raise self._refused(
                url, f"{host!r} is a private, loopback or link-local address ({', '.join(inward)})"
            )

    @staticmethod
    def _refused(url: str, why: str) -> ProviderError:
        return ProviderError(ErrorCode.INVALID_INPUT, _OP, f"audio_url {url!r} refused: {why}")
