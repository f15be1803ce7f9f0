"""Several runs of one case folded into one result: each number becomes its median and range.

A case's ``report`` function is written for one run's numbers. ``merge`` gives it the runs
together in the same shape, every number that differs between runs replaced by a ``Spread``:
a float whose value is the median (so comparisons against targets read the median), whose
arithmetic runs per run (a ratio of two spreads is the spread of the per-run ratios, not the
ratio of two medians), and whose formatting prints the median with the range beside it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, TypeVar, cast

T = TypeVar("T")


class Spread(float):
    """One number from several runs: the median as a float, every run's value in ``runs``."""

    __slots__ = ("runs",)
    runs: tuple[float, ...]

    def __new__(cls, runs: Sequence[float]) -> Spread:
        if not runs:
            raise ValueError("a spread needs at least one run")
        spread = super().__new__(cls, statistics.median(runs))
        spread.runs = tuple(float(value) for value in runs)
        return spread

    @property
    def low(self) -> float:
        return min(self.runs)

    @property
    def high(self) -> float:
        return max(self.runs)

    def __format__(self, spec: str) -> str:
        """``format(s, ",.0f")`` -> ``2,150 [1,980-2,372]``: the median, then min-max."""
        median, low, high = (format(value, spec) for value in (float(self), self.low, self.high))
        if low == high:
            return median
        between = " to " if self.low < 0 else "-"
        return f"{median} [{low}{between}{high}]"

    def __str__(self) -> str:
        return format(self, "")

    def __repr__(self) -> str:
        return f"Spread({list(self.runs)!r})"

    def _per_run(self, other: float, op: Any) -> Spread:
        if isinstance(other, Spread):
            if len(other.runs) != len(self.runs):
                raise ValueError(f"{len(self.runs)} runs against {len(other.runs)}")
            return Spread([op(a, b) for a, b in zip(self.runs, other.runs, strict=True)])
        return Spread([op(a, other) for a in self.runs])

    def __add__(self, other: float) -> Spread:
        return self._per_run(other, lambda a, b: a + b)

    def __radd__(self, other: float) -> Spread:
        return self._per_run(other, lambda a, b: b + a)

    def __sub__(self, other: float) -> Spread:
        return self._per_run(other, lambda a, b: a - b)

    def __rsub__(self, other: float) -> Spread:
        return self._per_run(other, lambda a, b: b - a)

    def __mul__(self, other: float) -> Spread:
        return self._per_run(other, lambda a, b: a * b)

    def __rmul__(self, other: float) -> Spread:
        return self._per_run(other, lambda a, b: b * a)

    def __truediv__(self, other: float) -> Spread:
        return self._per_run(other, lambda a, b: a / b)

    def __rtruediv__(self, other: float) -> Spread:
        return self._per_run(other, lambda a, b: b / a)


def merge(runs: Sequence[T]) -> T:
    """The runs in the shape of one: numbers that differ become a ``Spread``; dicts merge key
    by key (keys every run has), lists and tuples of one length item by item; anything else
    (text, a key some run lacks) is the first run's."""
    if not runs:
        raise ValueError("nothing to merge")
    return cast(T, _merge(list(runs)))


def _merge(runs: list[Any]) -> Any:
    first = runs[0]
    if all(_is_number(run) for run in runs):
        return first if all(run == first for run in runs) else Spread(runs)
    if all(isinstance(run, dict) for run in runs):
        return {
            key: _merge([run[key] for run in runs]) if all(key in run for run in runs) else value
            for key, value in first.items()
        }
    if type(first) in (list, tuple) and all(
        type(run) is type(first) and len(run) == len(first) for run in runs
    ):
        return type(first)(_merge(list(items)) for items in zip(*runs, strict=True))
    return first


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
