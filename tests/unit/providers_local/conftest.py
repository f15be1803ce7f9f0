"""Real PostgreSQL for these tests, started once per session by the project's script (Redis:
``redis_url`` in tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """PostgreSQL 18 + pgvector from deploy/local/postgres.sh (idempotent: reuses a running one)."""
    subprocess.run(["bash", str(REPO / "deploy/local/postgres.sh"), "start"], check=True)
    port = os.environ.get("FLEET_PG_PORT", "15432")
    return f"postgresql://postgres@127.0.0.1:{port}/fleet"
