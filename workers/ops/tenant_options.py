"""``--tenant`` and ``--tenant-key``: the tenant every command that sends jobs acts as, and
the key it signs with (fleets with ``[tenant_keys]`` run only what its tenant signed)."""

from __future__ import annotations

import argparse

from contracts.errors import ConfigError
from contracts.names import DEFAULT_TENANT
from contracts.secrets import resolve_secret

_REFERENCES = ("env:", "file:")


def add_tenant_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--tenant", default=DEFAULT_TENANT, help="the tenant to act as")
    cmd.add_argument(
        "--tenant-key", metavar="env:NAME|file:PATH",
        help="the tenant's signing key, from a variable or a file (never on the command line)",
    )  # fmt: skip


def tenant_key(args: argparse.Namespace) -> str | None:
    """The key ``--tenant-key`` names, or None without one. A key written out on the command
    line is refused: process lists and shell histories would keep it."""
    reference: str | None = args.tenant_key
    if reference is None:
        return None
    if not reference.startswith(_REFERENCES):
        raise ConfigError("--tenant-key: give env:NAME or file:PATH, not the key itself")
    try:
        return resolve_secret(reference)
    except ValueError as exc:
        raise ConfigError(f"--tenant-key: {exc}") from None
