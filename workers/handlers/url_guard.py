"""Which address a worker may connect to for a URL a caller gave (``audio_url``,
``image_url``): an http(s) URL whose host is allowed and whose every address lies outside the
worker's own network, unless the operator allowed that network. The check answers with the
one address the fetch then connects to (workers/handlers/guarded_fetch.py), so a name that
resolves differently a moment later (DNS rebinding) changes nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

Resolve = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A name that does not resolve in this long is refused (the fetch's own timeouts start later).
RESOLVE_TIMEOUT_S = 10.0

# Numbers and dots only: an IPv4 address in any spelling inet_aton takes (2130706433,
# 0177.0.0.1, 0x7f.1, 127.1), which resolvers and HTTP clients read as 127.0.0.1 too.
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)

# IPv6 ranges that carry an IPv4 address in their last 32 bits and reach it: IPv4-compatible
# (::a.b.c.d) and NAT64 (64:ff9b::/96, 64:ff9b:1::/48). IPv4-mapped and 6to4 have their own
# properties on IPv6Address.
_EMBEDDING_V4 = tuple(ipaddress.IPv6Network(n) for n in ("::/96", "64:ff9b::/96", "64:ff9b:1::/48"))


class UrlRefused(Exception):
    """The URL may not be fetched; ``why`` says what the operator or caller can change."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (``address``) and what to call the host there."""

    parts: SplitResult
    host: str  # the name, IDNA-encoded, or the address as written (no brackets)
    port: int
    address: str
    literal: bool  # the URL names an address, not a host name


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, as strings."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def host_matches(host: str, patterns: Sequence[str]) -> bool:
    """``host`` is one of ``patterns``: "example.com" names that host, ".example.com" every
    host under it."""
    host = host.lower().rstrip(".")
    return any(host == p or (p.startswith(".") and host.endswith(p)) for p in patterns)


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as one stands for, in whatever spelling; None for a name."""
    try:
        return _unwrapped(ipaddress.ip_address(host.split("%", 1)[0]))  # drop a zone id
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _unwrapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one leads to, where it embeds one; else the address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _EMBEDDING_V4) and int(ip) & 0xFFFFFFFF and ip.compressed != "::1":
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def inward(ip: IPAddress) -> str | None:
    """What makes ``ip`` an address inside the worker's network; None for a public one."""
    ip = _unwrapped(ip)
    kinds = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    )
    for kind, holds in kinds:
        if holds:
            return kind
    return None if ip.is_global else "non-public"


class UrlGuard:
    def __init__(
        self,
        hosts: Sequence[str] = (),
        *,
        allowed_networks: Sequence[IPNetwork] = (),
        resolve: Resolve = resolve_host,
    ) -> None:
        # Empty: any host; else only these ("example.com", ".example.com").
        self._hosts = [h.lower().rstrip(".") for h in hosts]
        self._allowed = list(allowed_networks)
        self._resolve = resolve

    async def check(self, url: str) -> Target:
        """The address to fetch ``url`` from; UrlRefused, naming the reason, when it may not
        be fetched."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise UrlRefused(f"it is not a URL that can be fetched ({exc})") from exc
        written = (parts.hostname or "").rstrip(".")
        if parts.scheme not in ("http", "https") or not written:
            raise UrlRefused("only http(s) URLs with a host can be fetched")
        if self._hosts and not host_matches(written, self._hosts):
            raise UrlRefused(f"host {written!r} is not in caller_urls.hosts")
        literal = literal_address(written)
        if literal is not None:
            self._allow(written, literal)
            return Target(parts, written, port, str(literal), literal=True)
        try:
            host = written.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UrlRefused(f"{written!r} is not a valid host name") from exc
        addresses = await self._addresses(host, port)
        for address in addresses:
            self._allow(host, address)
        return Target(parts, host, port, str(addresses[0]), literal=False)

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                found = await self._resolve(host, port)
        except (OSError, TimeoutError) as exc:
            raise UrlRefused(f"cannot resolve {host!r}: {str(exc) or 'timed out'}") from exc
        if not found:
            raise UrlRefused(f"cannot resolve {host!r}: no addresses")
        return [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]

    def _allow(self, host: str, address: IPAddress) -> None:
        kind = inward(address)
        if kind is None or any(_unwrapped(address) in net for net in self._allowed):
            return
        raise UrlRefused(
            f"{host!r} is {_unwrapped(address)}, a {kind} address: private, loopback or "
            "link-local addresses (the worker's own network) are not fetched unless "
            "caller_urls.allowed_networks holds them"
        )
