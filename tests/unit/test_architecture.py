"""The import rules of docs/architecture.md, held against the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# package -> module prefixes it must never import
FORBIDDEN = {
    "contracts": ("transport", "providers", "workers", "producer_sdk", "aiokafka", "redis",
                  "httpx"),
    "transport": ("providers", "workers", "producer_sdk", "redis", "httpx"),
    "providers": ("transport", "workers", "producer_sdk"),
    "producer_sdk": ("workers", "providers"),
    "workers.runtime": ("workers.ops",),
    "workers.handlers": ("workers.ops", "workers.runtime.consumer", "workers.runtime.runner",
                         "workers.runtime.links", "workers.runtime.links.chain"),
}  # fmt: skip
PACKAGES = ("contracts", "transport", "providers", "producer_sdk", "workers")


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


SOURCES = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_each_module_imports_only_what_its_package_may(path: Path) -> None:
    module = _module(path)
    broken = [
        f"{module} imports {name}"
        for package, forbidden in FORBIDDEN.items()
        if _within(module, package)
        for name in _imports(path)
        for prefix in forbidden
        if _within(name, prefix)
    ]
    assert broken == []


def test_only_the_operator_tools_import_the_operator_tools() -> None:
    offenders = [
        _module(path)
        for path in SOURCES
        if not _within(_module(path), "workers.ops")
        and any(_within(name, "workers.ops") for name in _imports(path))
    ]
    assert offenders == []


# Imports of workers/ that reach past producer_sdk's public face, until their name finds
# its place. STATUS_CONFIGS moves into the topology module (issue 24), which drops it here.
KNOWN_PAST_THE_FACE = {("producer_sdk.batches", "STATUS_CONFIGS")}


def _sdk_imports(path: Path) -> set[tuple[str, str]]:
    """(module, name) of each name imported from producer_sdk; ``import producer_sdk...``
    gives an empty name."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update((a.name, "") for a in node.names if _within(a.name, "producer_sdk"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and _within(node.module or "", "producer_sdk")
        ):
            found.update((node.module or "", alias.name) for alias in node.names)
    return found


def test_workers_import_only_what_producer_sdk_exports() -> None:
    import producer_sdk

    offenders = [
        f"{_module(path)}: from {module} import {name or '(the module)'}"
        for path in SOURCES
        if _within(_module(path), "workers")
        for module, name in sorted(_sdk_imports(path))
        if not (module == "producer_sdk" and name in producer_sdk.__all__)
        and (module, name) not in KNOWN_PAST_THE_FACE
    ]
    assert offenders == []
