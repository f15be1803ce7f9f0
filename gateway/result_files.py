"""A batch's output and error files, as ``/v1/files`` serves them: not stored, but written
from the batch's output topic when asked for (``BatchClient.results``, in OpenAI's line
shapes), so they are never out of step with it. Their ids name the batch:
``file-output-<batch id>`` and ``file-errors-<batch id>``. An ended batch has an output file
when some row succeeded and an error file when some did not; every custom_id is in exactly
one of the two."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Final, Literal, NamedTuple

from contracts.batch import BatchInfo
from producer_sdk import BatchClient, BatchNotFound

Which = Literal["output", "errors"]
_PREFIXES: Final[dict[Which, str]] = {"output": "file-output-", "errors": "file-errors-"}


class ResultFile(NamedTuple):
    """A result file written to ``path``, in a directory of its own (``discard`` it)."""

    batch: BatchInfo
    which: Which
    path: Path

    @property
    def file_id(self) -> str:
        return _PREFIXES[self.which] + self.batch.id

    @property
    def filename(self) -> str:
        return f"{self.batch.id}_{self.which}.jsonl"

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def result_file_ids(batch: BatchInfo) -> dict[Which, str]:
    """The result files ``batch`` has (none before it has ended)."""
    if not batch.ended:
        return {}
    counts = batch.request_counts
    has: dict[Which, bool] = {
        "output": counts.completed > 0,
        "errors": counts.completed < counts.total,
    }
    return {which: _PREFIXES[which] + batch.id for which, there in has.items() if there}


def is_result_file_id(file_id: str) -> bool:
    """Whether ``file_id`` names a batch's result file (an uploaded file's never does)."""
    return _named(file_id) is not None


async def result_file(batches: BatchClient, file_id: str) -> ResultFile | None:
    """The result file ``file_id`` of one of ``batches``' tenant's batches, written; None when
    the id names no such file."""
    named = _named(file_id)
    if named is None:
        return None
    which, batch_id = named
    try:
        batch = await batches.status(batch_id)
    except BatchNotFound:
        return None
    if result_file_ids(batch).get(which) != file_id:
        return None
    directory = Path(tempfile.mkdtemp(prefix="fleet-gateway-"))
    paths: dict[Which, Path] = {w: directory / f"{w}.jsonl" for w in _PREFIXES}
    try:
        await batches.results(batch.id, paths["output"], paths["errors"])
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return ResultFile(batch, which, paths[which])


def _named(file_id: str) -> tuple[Which, str] | None:
    """Which result file ``file_id`` names, and of which batch."""
    for which, prefix in _PREFIXES.items():
        if file_id.startswith(prefix):
            return which, file_id.removeprefix(prefix)
    return None
