"""Writes docs/benchmarks.md and the PNG plots in docs/img/ from bench/results/*.json.

``python -m bench.report`` (bench/run_all.sh runs it after every case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display is needed

from bench.common import REPO, load_result

DOCS = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"


def _bars(path: Path, title: str, ylabel: str, series: dict[str, dict[str, float]]) -> None:
    """Grouped bars: one group per x label, one bar per series."""
    labels = list(next(iter(series.values())))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + i * width for x in range(len(labels))]
        ax.bar(xs, [values[label] for label in labels], width, label=name)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _section(title: str, data: dict[str, Any] | None, script: str) -> list[str]:
    lines = [f"## {title}", ""]
    if data is None:
        return [*lines, f"Not run yet: `python -m bench.{script}`.", ""]
    machine = data["machine"]
    repeat = data.get("repeat", 1)
    lines += [
        f"Measured {machine['date']} by `bench/{script}.py` on {machine['cpus']} CPUs, "
        f"Python {machine['python']}"
        + (
            f"; 1-minute load average when it started: {data['load_average_before']:.2f}."
            if "load_average_before" in data
            else "."
        )
        + (
            f" Run {repeat} times: each number is the median, [min-max] of the runs beside it."
            if repeat > 1
            else " One run."
        ),
        "",
        data["table"],
        "",
        "Pinned settings:",
        "",
        *(f"- {k}: {v}" for k, v in data["settings"].items()),
        "",
    ]
    return lines


def _roundtrip_plot(data: dict[str, Any]) -> str:
    series = {
        variant: {f"{n} in flight": r["jobs_per_s"] for n, r in levels.items()}
        for variant, levels in data["results"].items()
    }
    _bars(IMG / "roundtrip.png", "No-op round trip", "jobs/s", series)
    return "![no-op round trip](img/roundtrip.png)"


def _peers_plot(data: dict[str, Any]) -> str:
    series = {
        variant: {f"{n} in flight": rate for n, rate in rates.items()}
        for variant, rates in data["results"].items()
    }
    _bars(IMG / "peers.png", "No-op round trip: fleet, Celery, Taskiq", "jobs/s", series)
    return "![peers](img/peers.png)"


def _embed_plot(data: dict[str, Any]) -> str:
    r = data["results"]
    series = {"sentences/s": {"direct": r["direct_per_s"], "fleet": r["fleet_per_s"]}}
    _bars(IMG / "embed_corpus.png", f"Embedding {r['sentences']:,} sentences", "sentences/s",
          series)  # fmt: skip
    return "![corpus embedding](img/embed_corpus.png)"


def _ttfc_plot(data: dict[str, Any]) -> str:
    series = {
        stat: {f"{n} in flight": r[f"{stat}_ms"] for n, r in data["results"].items()}
        for stat in ("p50", "p90", "p99")
    }
    _bars(IMG / "ttfc.png", "Time to first chunk beyond the provider's", "ms", series)
    return "![time to first chunk](img/ttfc.png)"


def _memory_plot(data: dict[str, Any]) -> str:
    results = data["results"]
    series = {
        variant: {kind: r[variant] for kind, r in results.items()}
        for variant in ("model loaded", "no model")
    }
    _bars(IMG / "memory.png", "Idle worker RSS", "MiB", series)
    return "![worker memory](img/memory.png)"


def _connections_plot(data: dict[str, Any]) -> str:
    series = {
        variant: {f"{n} in flight": rate for n, rate in rates.items()}
        for variant, rates in data["results"].items()
    }
    _bars(IMG / "connections.png", "No-op round trip: SASL_SSL, shared replies", "jobs/s", series)
    return "![connections](img/connections.png)"


def _batch_plot(data: dict[str, Any]) -> str:
    r = data["results"]
    series = {"rows/s": {"direct": r["direct_per_s"], "batch (coordinator)": r["batch_per_s"]}}
    _bars(IMG / "batch_jobs.png", f"A batch of {r['rows']:,} rows", "rows/s", series)
    return "![batch jobs](img/batch_jobs.png)"


def _lanes_plot(data: dict[str, Any]) -> str:
    latency = data["results"]["latency"]
    loads = [name for name, by_kind in latency.items() if "sent interactive" not in name]
    series = {
        f"{kind} p99": {name: latency[name][kind].get("p99_ms", 0.0) for name in loads}
        for kind in ("embed", "generate")
    }
    _bars(IMG / "lanes.png", "Interactive p99 while the batch lane runs", "ms", series)
    return "![priority lanes](img/lanes.png)"


def _scaling_plot(data: dict[str, Any]) -> str:
    results = data["results"]
    raw = results["raw aiokafka"]
    series = {
        f"{n} in flight": {
            "raw (1 responder)": raw[n]["jobs_per_s"],
            **{
                f"{count} worker{'s' if int(count) > 1 else ''}": levels[n]["jobs_per_s"]
                for count, levels in results["fleet"].items()
            },
        }
        for n in raw
    }
    _bars(IMG / "scaling.png", "No-op round trip, N worker processes in one group", "jobs/s",
          series)  # fmt: skip
    return "![scaling](img/scaling.png)"


def _gateway_plot(data: dict[str, Any]) -> str:
    r = data["results"]
    added = {
        "fleet gateway over FleetClient": (r["fleet gateway"], r["FleetClient"]),
        "LiteLLM over the mock, direct": (r["LiteLLM proxy"], r["mock OpenAI, direct"]),
    }
    series = {
        name: {stat: through[f"{stat}_ms"] - base[f"{stat}_ms"] for stat in ("p50", "p99")}
        for name, (through, base) in added.items()
    }
    # Its own time, from its overhead header: what the difference above hides in the noise.
    own = {stat: r["fleet gateway"][f"own_{stat}_ms"] for stat in ("p50", "p99")}
    series = {"fleet gateway's own time": own, **series}
    _bars(IMG / "gateway_overhead.png", "Latency added at 1 in flight", "ms", series)
    return "![gateway overhead](img/gateway_overhead.png)"


CASES = (
    ("roundtrip", "1. No-op round trip: fleet against raw aiokafka", _roundtrip_plot),
    ("peers", "2. Fleet against Celery and Taskiq", _peers_plot),
    ("embed_corpus", "3. Corpus embedding: fleet against direct calls", _embed_plot),
    ("ttfc", "4. Time to first chunk", _ttfc_plot),
    ("memory", "5. Idle worker memory", _memory_plot),
    ("connections", "6. A secured connection and a shared reply topic", _connections_plot),
    ("batch_jobs", "7. A batch through the coordinator against direct calls", _batch_plot),
    ("lanes", "8. Interactive latency while a batch runs (priority lanes)", _lanes_plot),
    ("scaling", "9. More worker processes in one group", _scaling_plot),
    ("batch_redis_growth", "10. Redis's growth over a batch", lambda data: ""),
    (
        "gateway_overhead",
        "11. The HTTP gateway against FleetClient, and LiteLLM's proxy",
        _gateway_plot,
    ),
)
# The script of a case whose result file is named otherwise.
SCRIPT_OF = {"batch_redis_growth": "batch_jobs"}

HEADER = """# Benchmarks

Generated by `bench/run_all.sh` (`python -m bench.report` rewrites this file from
`bench/results/*.json`); how each case measures is in `bench/README.md` and
`docs/decisions/0004-benchmark-method.md`. Every case runs its baseline in the same run and
reports ratios; absolute numbers move with whatever else the machine is doing (the 2-core
machine these ran on is shared, so each case also prints the load average it started at, and
case 1 records CPU time per job of every process, which does not depend on that load).
"""

GPU = """## GPU

No GPU machine was lent to this task, so the GPU target (corpus embedding through the fleet
at least as fast as one process calling sentence-transformers on an H100) is not measured
here. `bench/embed_corpus.py` is the harness to run there, with a `sentence-transformers`
provider instead of `local-minilm`.
"""


def _notes() -> str:
    notes = REPO / "bench" / "NOTES.md"
    return notes.read_text() if notes.is_file() else ""


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    for case, title, plot in CASES:
        data = load_result(case)
        lines += _section(title, data, SCRIPT_OF.get(case, case))
        if data is not None and (image := plot(data)):
            lines += [image, ""]
    lines += [GPU, _notes()]
    DOCS.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {DOCS.relative_to(REPO)} and plots in {IMG.relative_to(REPO)}/")


if __name__ == "__main__":
    main()
