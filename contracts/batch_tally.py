"""Which outcome of a row counts: the one rule every reader of a batch's output follows.

The output topic may hold a row more than once: a coordinator that died after writing a
record writes it again when it resumes, and each `retry` round writes the rows it ran
again. Per custom_id the outcome of the highest round wins, and within a round the first
one written. A row is *settled* for a round when it needs no more work in it: it has an
outcome of that round, or an earlier outcome that is not a retryable error.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.batch import BatchResults, RequestCounts, RowResult


class _Winner:
    __slots__ = ("failed", "offset", "retryable", "round")

    def __init__(self, round_: int, offset: int, row: RowResult) -> None:
        self.round = round_
        self.offset = offset
        self.failed = row.error is not None
        self.retryable = row.error is not None and row.error.retryable


class ResultTally:
    """Fed the output records in topic order (``add``), it knows each row's winning outcome
    by where it was written, and the counts."""

    def __init__(self) -> None:
        self._winners: dict[str, _Winner] = {}

    def add(self, offset: int, results: BatchResults) -> None:
        for row in results.rows:
            known = self._winners.get(row.custom_id)
            if known is None or results.round > known.round:
                self._winners[row.custom_id] = _Winner(results.round, offset, row)

    def wins(self, offset: int, results: BatchResults) -> Iterable[RowResult]:
        """The rows of the record at ``offset`` that are their custom_id's winning outcome."""
        for row in results.rows:
            winner = self._winners.get(row.custom_id)
            if winner is not None and winner.offset == offset and winner.round == results.round:
                yield row

    def settled(self, custom_id: str, round_: int) -> bool:
        winner = self._winners.get(custom_id)
        if winner is None:
            return False
        return winner.round == round_ or not winner.retryable

    def eligible(self, custom_id: str, round_: int) -> bool:
        """Whether round ``round_`` runs this row: it has no outcome, or one of that round,
        or a retryable error from an earlier round. The same before and after the round's
        outcomes come, so a resumed round sends the same requests."""
        winner = self._winners.get(custom_id)
        return winner is None or winner.round >= round_ or winner.retryable

    def has(self, custom_id: str) -> bool:
        return custom_id in self._winners

    def retryable(self) -> int:
        """Rows whose outcome is a retryable error (what a retry round would run again)."""
        return sum(w.retryable for w in self._winners.values())

    def counts(self, total: int) -> RequestCounts:
        failed = sum(w.failed for w in self._winners.values())
        return RequestCounts(total=total, completed=len(self._winners) - failed, failed=failed)
