"""Case 5: resident memory of an idle worker process of each kind, with and without a model.

Each worker is the real `fleet worker KIND` command. "model loaded" is the default config
(local SmolLM2, MiniLM, Whisper tiny.en); "no model" points every model provider at the
OpenAI-compatible HTTP provider with a loopback base_url that is never called. RSS is read
from /proc/<pid>/status (VmRSS) after the worker says it is ready and has idled SETTLE_S.

``python -m bench.memory``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BOOTSTRAP,
    REDIS_URL,
    helper,
    namespace,
    print_table,
    python_module,
    run_case,
)

KINDS = ("generate", "embed", "transcribe", "vectors")
SETTLE_S = 3.0
_DUMMY_URL = "http://127.0.0.1:9/v1"  # discard port: nothing is ever sent

_NO_MODEL = f"""
chat = [{{ name = "openai", config = {{ base_url = "{_DUMMY_URL}", models = ["m"] }} }}]
embeddings = [{{ name = "openai", config = {{ base_url = "{_DUMMY_URL}", models = ["e"], \
dimension = 384 }} }}]
transcription = [{{ name = "openai", config = {{ base_url = "{_DUMMY_URL}", models = ["t"] }} }}]
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def measure(kind: str, config: Path) -> float:
    ns = namespace(f"mem-{kind}")
    command = python_module("workers.ops.cli", "worker", kind, "--config", str(config))
    with helper(
        command,
        log_name=f"memory-{ns}",
        env={"FLEET_NAMESPACE": ns},
        ready_line="worker ready",
        ready_timeout_s=180,
    ) as worker:
        time.sleep(SETTLE_S)
        return rss_mib(worker.pid)


def run() -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = f'bootstrap_servers = "{BOOTSTRAP}"\nredis_url = "{REDIS_URL}"\n'
        loaded = Path(tmp) / "loaded.toml"
        loaded.write_text(base)
        bare = Path(tmp) / "no-model.toml"
        bare.write_text(base + _NO_MODEL)
        for kind in KINDS:
            results[kind] = {"model loaded": measure(kind, loaded), "no model": measure(kind, bare)}
            print(f"{kind}: {results[kind]}", flush=True)
    return results


PINNED: dict[str, Any] = {
    "worker": "`python -m workers.ops.cli worker KIND --config ...`, one process each",
    "model loaded": "default providers: local-llama (SmolLM2-135M), local-minilm, "
    "local-whisper (tiny.en); vectors: Redis vector sets + local-minilm",
    "no model": f"openai providers with base_url {_DUMMY_URL} (never called); "
    "vectors: Redis vector sets + openai embeddings",
    "idle before reading VmRSS": f"{SETTLE_S:g} s after 'worker ready'",
}


def report(results: dict[str, dict[str, float]]) -> str:
    rows = [[k, r["model loaded"], r["no model"]] for k, r in results.items()]
    return print_table(
        "idle worker resident memory (VmRSS), MiB",
        ["kind", "model loaded", "no model"],
        rows,
    )


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    run_case("memory", PINNED, run, report)


if __name__ == "__main__":
    main()
