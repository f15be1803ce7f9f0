"""One place maps failures to outcomes: the failure table (workers/failure_table.py). No
other module of the workers picks a dead-letter reason, and the modules that end a failed
job or a bad message pick no error code of their own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

TABLE = REPO / "workers/failure_table.py"
# The operator tools read dead letters back (listing and filtering them by reason); they
# decide no outcome.
READERS = REPO / "workers/ops"
# The modules that turn a failure into an outcome: the job runner's links, the retry
# forwarder, the control listener and the dead-letter publisher.
OUTCOME_MODULES = [
    *sorted((REPO / "workers/runtime").rglob("*.py")),
    REPO / "workers/retry.py",
    REPO / "workers/control.py",
    REPO / "workers/dead_letter.py",
]
WORKERS = sorted(
    p for p in (REPO / "workers").rglob("*.py") if p != TABLE and READERS not in p.parents
)


def _reasons_named(source: str) -> list[str]:
    """Where ``source`` gets hold of DeadLetterReason: an import of it, or an attribute
    that reaches it through a module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [
                f"line {node.lineno}: imports {a.name}"
                for a in node.names
                if a.name == "DeadLetterReason"
            ]
        elif isinstance(node, ast.Attribute) and node.attr == "DeadLetterReason":
            found.append(f"line {node.lineno}: reaches DeadLetterReason")
    return found


def _codes_named(source: str) -> list[str]:
    """Every ``ErrorCode.MEMBER`` in ``source`` (the type itself, in annotations, is fine)."""
    return [
        f"line {node.lineno}: ErrorCode.{node.attr}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ErrorCode"
        and node.attr.isupper()
    ]


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("path", WORKERS, ids=_name)
def test_only_the_failure_table_picks_a_dead_letter_reason(path: Path) -> None:
    assert _reasons_named(path.read_text()) == []


@pytest.mark.parametrize("path", OUTCOME_MODULES, ids=_name)
def test_the_outcome_modules_take_their_error_codes_from_the_table(path: Path) -> None:
    assert _codes_named(path.read_text()) == []


def test_the_checks_see_what_they_look_for() -> None:
    copy = (
        "from contracts.names import DeadLetterReason\n"
        "import contracts.names\n"
        "try:\n"
        "    pass\n"
        "except ContractError as exc:\n"
        "    reason = contracts.names.DeadLetterReason(exc.reason.value)\n"
        "    code = ErrorCode.INVALID_INPUT\n"
    )
    assert len(_reasons_named(copy)) == 2
    assert _codes_named(copy) == ["line 7: ErrorCode.INVALID_INPUT"]
    # ... and the table itself is where both are named.
    assert _reasons_named(TABLE.read_text())
    assert _codes_named(TABLE.read_text())
