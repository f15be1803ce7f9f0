"""Real PostgreSQL and Redis for these tests, started once per session by the project's scripts."""

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


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis 8 (vector sets) from deploy/local/redis.sh (idempotent)."""
    subprocess.run(["bash", str(REPO / "deploy/local/redis.sh"), "start"], check=True)
    port = os.environ.get("FLEET_REDIS_PORT", "16379")
    return f"redis://127.0.0.1:{port}/0"
