"""Hosts of a test's own: network namespaces (``ip netns``), each joined to this host by a
veth pair on a Linux bridge, so processes started in them reach the host side (and one
another) over a real network hop, and one host's link can be taken away.

    bridge fleetbr<pid>: 10.A.B.1/24 (the host side: the broker and Redis listen there)
      veth fl<pid>h<i> <-> fl<pid>n<i> in namespace fleet-<pid>-<i>: 10.A.B.(10+i)/24

Everything is named after this process, torn down on the way out (even on failure), and
left over by a run that was killed is removed by the next one. Where namespaces cannot be
made (not root, no CAP_NET_ADMIN, no ``ip``), the test is skipped, saying why."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

_LEFTOVER = re.compile(r"^(?:fleet-(\d+)-\d+|fleetbr(\d+))$")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


@dataclass(frozen=True)
class NetnsHost:
    name: str  # the namespace
    address: str  # its address on the bridge
    link: str  # the host side of its veth pair

    @property
    def prefix(self) -> list[str]:
        """What runs a command on this host."""
        return ["ip", "netns", "exec", self.name]

    def link_down(self) -> None:
        """This host drops off the network: nothing in or out, no connection reset."""
        _ip("link", "set", self.link, "down")

    def link_up(self) -> None:
        _ip("link", "set", self.link, "up")


@dataclass(frozen=True)
class NetnsTopology:
    bridge: str
    gateway: str  # the host side's address on the bridge
    hosts: list[NetnsHost]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_leftovers() -> None:
    """Namespaces and bridges of runs whose process is gone."""
    namespaces = _ip("netns", "list", check=False).stdout.split()
    bridges = [
        line.split(":")[1].strip().split("@")[0]
        for line in _ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines()
    ]
    for name in namespaces + bridges:
        match = _LEFTOVER.match(name)
        if match and not _alive(int(match[1] or match[2])):
            if name.startswith("fleetbr"):
                _ip("link", "del", name, check=False)
            else:
                _ip("netns", "del", name, check=False)


def _free_subnet(pid: int) -> str:
    """A 10.A.B.0/24 that no address or route of this host overlaps: '10.A.B'."""
    listed = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show").stdout
    used = [
        ipaddress.ip_network(word, strict=False)
        for word in listed.split()
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+(/\d+)?", word)
    ]
    for step in range(64):
        n = pid + 977 * step
        subnet = f"10.{200 + n % 50}.{(n // 50) % 256}"
        if not any(ipaddress.ip_network(f"{subnet}.0/24").overlaps(net) for net in used):
            return subnet
    raise AssertionError("no free 10.x.y.0/24 for the test's hosts")


@contextmanager
def netns_hosts(count: int = 3) -> Iterator[NetnsTopology]:
    pid = os.getpid()
    probe = f"fleet-{pid}-0"
    try:
        _remove_leftovers()
        made = _ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        pytest.skip("network namespaces cannot be created here: no `ip` command (iproute2)")
    if made.returncode != 0:
        pytest.skip(
            "network namespaces cannot be created here (needs root or CAP_NET_ADMIN): "
            f"`ip netns add` said {made.stderr.strip()!r}"
        )
    subnet = _free_subnet(pid)
    bridge = f"fleetbr{pid}"
    hosts = [
        NetnsHost(f"fleet-{pid}-{i}", f"{subnet}.{10 + i}", f"fl{pid}h{i}") for i in range(count)
    ]
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, host in enumerate(hosts):
            inside = f"fl{pid}n{i}"
            if i > 0:
                _ip("netns", "add", host.name)
            _ip("link", "add", host.link, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", host.name)
            _ip("link", "set", host.link, "master", bridge, "up")
            _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", inside)
            _ip("-n", host.name, "link", "set", inside, "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
        yield NetnsTopology(bridge, f"{subnet}.1", hosts)
    finally:
        for host in hosts:
            _ip("link", "del", host.link, check=False)
            _ip("netns", "del", host.name, check=False)
        _ip("link", "del", bridge, check=False)
