"""How ``fleet dlq`` prints dead letters: one line (or one JSON object) per record, and a
count per reason at the end; and what a replay did with each."""

from __future__ import annotations

import collections
import datetime
import sys
from typing import TextIO

import msgspec

from contracts.errors import FleetError
from workers.ops.dead_letter_replay import ReplayOutcome, ReplayTotals
from workers.ops.dead_letters import DeadLetterFilter, DeadLetterInfo, DeadLetterReader
from workers.settings import WorkerSettings

_json = msgspec.json.Encoder()
_DETAIL_CHARS = 300


def when(timestamp_ms: int) -> str:
    """A record's time, UTC, to the second."""
    moment = datetime.datetime.fromtimestamp(timestamp_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def text_line(info: DeadLetterInfo) -> str:
    """Time, request id, tenant, reason, what happened, where the message came from."""
    parts = [
        when(info.timestamp_ms),
        f"{info.partition}@{info.offset}",
        info.request_id or "(no request id)",
        f"tenant={info.tenant or '?'}",
        info.reason,
    ]
    detail = " ".join(info.detail.split())
    if len(detail) > _DETAIL_CHARS:
        detail = detail[: _DETAIL_CHARS - 3] + "..."
    if detail:
        parts.append(detail)
    if info.source_topic is not None:
        parts.append(
            f"from {info.source_topic}[{_or_dash(info.source_partition)}]"
            f"@{_or_dash(info.source_offset)}"
        )
    return "  ".join(parts)


def _or_dash(number: int | None) -> str:
    return "-" if number is None else str(number)


def json_line(info: DeadLetterInfo) -> str:
    """One JSON object: every field of ``DeadLetterInfo``, and ``time`` as text."""
    fields = msgspec.structs.asdict(info)
    return _json.encode({"time": when(info.timestamp_ms), **fields}).decode()


class ReasonCounts:
    """How many records were seen of each reason."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, info: DeadLetterInfo) -> None:
        self._counts[info.reason] += 1

    @property
    def total(self) -> int:
        return self._counts.total()

    def as_dict(self) -> dict[str, int]:
        return dict(self._counts.most_common())

    def lines(self) -> list[str]:
        """The summary: one line per reason, most frequent first, then the total."""
        width = max((len(reason) for reason in self._counts), default=0)
        rows = [f"  {reason:<{width}}  {count}" for reason, count in self._counts.most_common()]
        return [f"{self.total} dead letter(s)" + (" by reason:" if rows else ""), *rows]


async def print_dead_letters(
    settings: WorkerSettings,
    kind: str,
    selection: DeadLetterFilter,
    *,
    limit: int | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
) -> ReasonCounts:
    """``fleet dlq list``: the selected dead letters of ``kind`` (only the newest ``limit``,
    when given), then the count per reason of every selected one."""
    # Looked up per call, not bound at import: stdout may be replaced since (a redirect).
    out = sys.stdout if out is None else out
    if limit is not None and limit < 1:
        raise FleetError(f"--limit is {limit}: show 1 dead letter or more")
    counts = ReasonCounts()
    newest: collections.deque[DeadLetterInfo] = collections.deque(maxlen=limit)
    async with DeadLetterReader(settings, kind) as reader:
        async for letter in reader.letters():
            if selection.selects(letter.info):
                counts.add(letter.info)
                newest.append(letter.info)
    shown = sorted(newest, key=lambda info: (info.timestamp_ms, info.partition, info.offset))
    for info in shown:
        print(json_line(info) if as_json else text_line(info), file=out)
    if as_json:
        summary = {"summary": {"total": counts.total, "by_reason": counts.as_dict()}}
        print(_json.encode(summary).decode(), file=out)
    else:
        if len(shown) < counts.total:
            print(f"(the newest {len(shown)} shown)", file=out)
        print("\n".join(counts.lines()), file=out)
    return counts


def outcome_line(outcome: ReplayOutcome) -> str:
    info = outcome.info
    where = f"{info.partition}@{info.offset}"
    line = f"{outcome.action}  {where}  {info.request_id or '(no request id)'}  {info.reason}"
    return f"{line}: {outcome.why}" if outcome.why else line


def totals_line(totals: ReplayTotals, *, dry_run: bool) -> str:
    verb = "would replay" if dry_run else "replayed"
    return (
        f"{verb} {totals.replayed}, skipped {totals.skipped}, "
        f"{totals.replayed_before} dealt with by an earlier replay, "
        f"{totals.not_selected} not selected"
    )
