"""The import rules of docs/architecture.md, held against the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# package -> module prefixes it must never import
FORBIDDEN = {
    "contracts": ("transport", "providers", "workers", "producer_sdk", "gateway", "aiokafka",
                  "redis", "httpx"),
    "transport": ("providers", "workers", "producer_sdk", "gateway", "redis", "httpx"),
    "providers": ("workers", "producer_sdk", "gateway"),
    "producer_sdk": ("workers", "providers", "gateway"),
    # The HTTP gateway is a producer: it sends jobs through producer_sdk like any service.
    "gateway": ("workers", "providers"),
    "workers.runtime": ("workers.ops",),
    "workers.handlers": ("workers.ops", "workers.runtime.consumer", "workers.runtime.runner",
                         "workers.runtime.links", "workers.runtime.links.chain"),
}  # fmt: skip
PACKAGES = ("contracts", "transport", "providers", "producer_sdk", "gateway", "workers")


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


def _unit(module: str) -> str:
    """What the cycle check counts as one node: a package, or, for a module at the root of
    a package that has sub-packages (``workers/settings.py``, ``providers/router.py``), the
    module itself: such a root is a namespace of layers, not one layer."""
    path = REPO.joinpath(*module.split("."))
    if path.is_dir():
        return module  # a package's own __init__
    package = path.parent
    has_subpackages = any((child / "__init__.py").exists() for child in package.iterdir())
    return module if has_subpackages else ".".join(package.relative_to(REPO).parts)


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        source = _unit(_module(path))
        for name in _imports(path):
            if name.split(".")[0] not in PACKAGES:
                continue
            while not (REPO.joinpath(*name.split(".")).is_dir() or _exists(name)):
                name = name.rsplit(".", 1)[0]  # `from package.module import name`
            target = _unit(name)
            if target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def _exists(module: str) -> bool:
    return REPO.joinpath(*module.split(".")).with_suffix(".py").exists()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            component.append(node)
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_only_the_operator_tools_start_the_gateway() -> None:
    """Workers never import the gateway: it is a process of its own, started by `fleet`."""
    offenders = [
        _module(path)
        for path in SOURCES
        if _within(_module(path), "workers")
        and not _within(_module(path), "workers.ops")
        and any(_within(name, "gateway") for name in _imports(path))
    ]
    assert offenders == []


def test_no_package_imports_itself_back_through_another() -> None:
    graph = _package_graph()
    assert {"workers.handlers", "workers.runtime.links", "workers.batch"} <= set(graph)
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_one_module_fetches_from_kafka() -> None:
    """Every consume loop is a variant of transport/consume.py's: no module fetches itself."""
    fetching = [_module(p) for p in SOURCES if ".getmany(" in p.read_text()]
    assert fetching == ["transport.consume"]


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
    ]
    assert offenders == []
