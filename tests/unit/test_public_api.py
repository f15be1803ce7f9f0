"""Each package's __all__ is sorted and names only things that exist."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "contracts",
    "gateway",
    "providers",
    "providers.chat",
    "providers.embeddings",
    "providers.memory",
    "providers.transcription",
    "providers.speech",
    "providers.vectorstores",
    "producer_sdk",
    "workers",
]


def _isort_style(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_resolvable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_style)
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []


def test_producer_sdk_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, producer_sdk;"
        "heavy = {'cyllama', 'onnxruntime', 'redis', 'httpx', 'workers', 'providers'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
