"""`fleet models`: what the settings serve, with the model catalogue applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workers.ops.cli import main
from workers.ops.models import list_models
from workers.settings import WorkerSettings

CONFIG = """
[[chat]]
name = "fallback"
config = { providers = [
  { name = "openai", config = { name = "vllm", base_url = "http://127.0.0.1:8000/v1", models = ["llama-3.1-8b"], max_context_tokens = 32768 } },
  { name = "openai", config = { models = ["gpt-4o-mini", "gpt-4o"] }, model = "gpt-4o-mini" },
] }

[[embeddings]]
name = "openai"
config = { models = ["text-embedding-3-small"], dimension = 1536 }

[[rerank]]
name = "jina"
config = { models = ["jina-reranker-v2-base-multilingual"] }

[[models]]
name = "jina-reranker-v2-base-multilingual"
input_usd_per_mtok = 0.02

[[models]]
name = "gpt-4o-mini"
context_tokens = 128000
vision = true
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60

[[models]]
name = "llama-3.1-8b"
provider = "vllm"
context_tokens = 8192
tools = false

[[models]]
name = "text-embedding-3-small"
input_usd_per_mtok = 0.02

[[speech]]
name = "openai"
config = { models = ["tts-1"] }

[[models]]
name = "tts-1"
input_usd_per_mchar = 15.0

[[models]]
name = "gpt-4o-mini"
provider = "nowhere"
"""  # noqa: E501


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(CONFIG)
    return path


async def test_the_default_models_each_serve_one_kind() -> None:
    # The gateway knows a model id by one job kind: the local bi-encoder must not take the
    # embedder's id.
    listing = await list_models(WorkerSettings())
    kinds: dict[str, set[str]] = {}
    for row in listing.models:
        kinds.setdefault(row.model, set()).add(row.kind)
    assert kinds["all-minilm-l6-v2"] == {"embed"}
    assert kinds["all-minilm-l6-v2-biencoder"] == {"rerank"}
    assert all(len(served) == 1 for served in kinds.values()), kinds


def test_fleet_models_lists_what_the_settings_serve(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--config", str(config), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = {(r["kind"], r.get("via"), r["model"]): r for r in listing["models"]}
    vllm = rows["generate", "vllm", "llama-3.1-8b"]
    assert vllm["provider"] == "fallback"
    assert (vllm["context_tokens"], vllm["tools"]) == (8192, False)
    stand_in = rows["generate", "openai", "llama-3.1-8b"]
    assert stand_in["runs"] == "gpt-4o-mini"
    assert (stand_in["context_tokens"], stand_in["vision"]) == (128000, True)
    assert stand_in["input_usd_per_mtok"] == 0.15
    gpt4o = rows["generate", "openai", "gpt-4o"]
    assert "context_tokens" not in gpt4o  # nothing says it
    assert rows["embed", None, "text-embedding-3-small"]["input_usd_per_mtok"] == 0.02
    reranker = rows["rerank", None, "jina-reranker-v2-base-multilingual"]
    assert (reranker["provider"], reranker["input_usd_per_mtok"]) == ("jina", 0.02)
    assert rows["speech", None, "tts-1"]["input_usd_per_mchar"] == 15.0
    assert [e["provider"] for e in listing["unused_entries"]] == ["nowhere"]

    assert main(["models", "--config", str(config)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["KIND", "PROVIDER", "MODEL", "CONTEXT", "CAN", "$/M", "IN",
                                "$/M", "OUT"]  # fmt: skip
    assert any("fallback > vllm" in line and "8192" in line for line in table)
    assert any(line.split()[:2] == ["speech", "openai"] and "15/char" in line for line in table)
    assert table[-1].startswith("warning: `[[models]]` entry 'gpt-4o-mini' for provider")
