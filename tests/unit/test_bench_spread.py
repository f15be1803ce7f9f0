"""Repeated benchmark runs folded into one table: medians, ranges, per-run ratios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import common
from bench.spread import Spread, merge


def test_a_spread_prints_its_median_then_min_max_in_the_format_asked() -> None:
    assert format(Spread([2372.4, 1980.2, 2150.0]), ",.0f") == "2,150 [1,980-2,372]"
    assert f"{Spread([0.91, 0.80, 0.85]):.2f}x" == "0.85 [0.80-0.91]x"
    assert format(Spread([-61.0, -320.0, -190.0]), "+,.0f") == "-190 [-320 to -61]"


def test_a_spread_of_equal_runs_prints_one_number() -> None:
    assert format(Spread([1.0, 1.0]), ".2f") == "1.00"


def test_the_median_is_the_value_targets_are_held_against() -> None:
    spread = Spread([0.7, 0.9, 0.85])
    assert spread == pytest.approx(0.85)
    assert spread >= 0.8
    assert Spread([1.0, 2.0, 3.0, 10.0]) == pytest.approx(2.5)


def test_arithmetic_runs_per_run_so_a_ratio_keeps_its_own_spread() -> None:
    fleet, raw = Spread([2.0, 4.0, 6.0]), Spread([1.0, 2.0, 2.0])
    ratio = fleet / raw
    assert ratio.runs == (2.0, 2.0, 3.0)
    assert (raw / fleet).runs == pytest.approx((0.5, 0.5, 1 / 3))
    assert (fleet - raw).runs == (1.0, 2.0, 4.0)
    assert (10 - raw).runs == (9.0, 8.0, 8.0)
    assert (fleet * 2).runs == (4.0, 8.0, 12.0)
    assert (2 / raw).runs == (2.0, 1.0, 1.0)
    total = sum([raw, raw, 1.0])
    assert isinstance(total, Spread)
    assert total.runs == (3.0, 5.0, 5.0)


def test_spreads_of_different_run_counts_do_not_mix() -> None:
    with pytest.raises(ValueError, match="2 runs against 3"):
        Spread([1.0, 2.0]) + Spread([1.0, 2.0, 3.0])


def test_merge_keeps_the_shape_of_one_run() -> None:
    runs: list[dict[Any, Any]] = [
        {64: {"jobs_per_s": 100.0, "jobs": 6000, "name": "a", "ok": True}, "only here": 1},
        {64: {"jobs_per_s": 300.0, "jobs": 6000, "name": "b", "ok": False}},
        {64: {"jobs_per_s": 200.0, "jobs": 6000, "name": "c", "ok": True}},
    ]
    merged = merge(runs)
    level = merged[64]
    assert isinstance(level["jobs_per_s"], Spread)
    assert level["jobs_per_s"].runs == (100.0, 300.0, 200.0)
    assert level["jobs"] == 6000
    assert not isinstance(level["jobs"], Spread)
    assert level["name"] == "a"
    assert level["ok"] is True  # a flag is not a number
    assert merged["only here"] == 1
    items = merge([(1.0, 2.0), (3.0, 2.0)])
    assert isinstance(items, tuple)
    assert isinstance(items[0], Spread)
    assert items[0].runs == (1.0, 3.0)
    assert items[1] == 2.0
    assert not isinstance(items[1], Spread)


def test_one_run_merges_to_itself() -> None:
    run = {"16": {"jobs_per_s": 1234.5}}
    assert merge([run]) == run


def test_run_case_repeats_and_saves_medians_runs_and_the_table_with_spreads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "start_services", lambda: None)
    monkeypatch.setattr(common, "REPO", tmp_path)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "bench" / "results")
    rates = iter([100.0, 300.0, 200.0])

    def measure() -> dict[int, float]:
        return {64: next(rates)}

    def report(result: dict[int, float]) -> str:
        return common.print_table("t", ["in flight", "jobs/s"], [[64, result[64]]])

    common.run_case(
        "fake",
        {"pinned": 1},
        measure,
        report,
        as_json=lambda result: {str(n): rate for n, rate in result.items()},
        repeat=3,
    )
    saved = json.loads((tmp_path / "bench" / "results" / "fake.json").read_text())
    assert saved["repeat"] == 3
    assert saved["results"] == {"64": 200.0}
    assert saved["runs"] == [{"64": 100.0}, {"64": 300.0}, {"64": 200.0}]
    assert "200 [100-300]" in saved["table"]
