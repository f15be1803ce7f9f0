"""``fleet batch submit|list|status|cancel|results|retry``: batch jobs from the command
line, with a progress line while one runs and ``--json`` for scripts."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from contracts.batch import DEFAULT_WINDOW_S, BatchInfo, BatchState
from contracts.errors import ConfigError
from producer_sdk import BatchClient, KafkaSecurity
from transport.connection import KafkaConnection
from workers.ops.batch_progress import BatchProgress
from workers.ops.tenant_options import add_tenant_options, tenant_key

Command = Callable[[BatchClient, argparse.Namespace], Awaitable[int]]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_batch_commands(
    sub: Any, connection_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    batch = sub.add_parser(
        "batch", help="batch jobs the fleet owns: submit a file, come back later"
    )
    commands = batch.add_subparsers(required=True, metavar="ACTION")

    submit = commands.add_parser("submit", help="submit a JSONL, CSV or Parquet file")
    submit.add_argument("file", type=Path)
    submit.add_argument("--model", help="the model (default: the one the rows name)")
    submit.add_argument("--collection", help="embed batches: upsert each vector into it")
    submit.add_argument("--dimensions", type=int, help="embed batches: shorter vectors")
    submit.add_argument("--window", default="24h", help="completion window: 90m, 24h, 2d")
    submit.add_argument("--format", choices=("jsonl", "csv", "parquet"), help="default: by suffix")
    submit.add_argument("--follow", action="store_true", help="show progress until it ends")
    submit.set_defaults(batch_command=_submit)

    for name, helptext, handler in (
        ("status", "show one batch's status", _status),
        ("cancel", "stop a batch (the rows finished stay downloadable)", _cancel),
        ("retry", "run again the rows that failed with a retryable error", _retry),
        ("follow", "show a batch's progress until it ends", _follow),
    ):
        cmd = commands.add_parser(name, help=helptext)
        cmd.add_argument("batch_id")
        cmd.set_defaults(batch_command=handler)
    commands.choices["retry"].add_argument("--follow", action="store_true")
    commands.choices["retry"].add_argument(
        "--window", help="the round's window (default: the batch's)"
    )

    listing = commands.add_parser("list", help="every batch, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(batch_command=_list)

    results = commands.add_parser("results", help="download the results (and the errors)")
    results.add_argument("batch_id")
    results.add_argument("output", type=Path)
    results.add_argument("--errors", type=Path, help="default: OUTPUT with .errors.jsonl")
    results.add_argument(
        "--format", choices=("jsonl", "npy", "parquet", "corpus"), default="jsonl",
        help="jsonl: OpenAI's batch output; npy/parquet: vectors only, compact",
    )  # fmt: skip
    results.set_defaults(batch_command=_results)

    for cmd in commands.choices.values():
        connection_options(cmd)
        add_tenant_options(cmd)
        cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    batch.set_defaults(func=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    return asyncio.run(_with_client(args, args.batch_command))


async def _with_client(args: argparse.Namespace, command: Command) -> int:
    connection = KafkaConnection(
        bootstrap_servers=args.bootstrap_servers, security=KafkaSecurity.from_env()
    )
    async with BatchClient(
        connection, namespace=args.namespace, tenant=args.tenant, tenant_key=tenant_key(args)
    ) as client:
        return await command(client, args)


def parse_window(text: str) -> float:
    """``90m``, ``24h``, ``2d`` or seconds, as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None or float(match[1]) <= 0:
        raise ConfigError(f"--window {text!r}: give a duration such as 90m, 24h or 2d")
    return float(match[1]) * _UNITS[match[2] or "s"]


async def _submit(client: BatchClient, args: argparse.Namespace) -> int:
    info = await client.submit(
        args.file,
        model=args.model,
        collection=args.collection,
        dimensions=args.dimensions,
        window_s=parse_window(args.window) if args.window else DEFAULT_WINDOW_S,
        format=args.format,
    )
    if not args.json:
        print(f"{info.id}: {info.request_counts.total:,} rows submitted ({info.endpoint}, "
              f"{info.model})", file=sys.stderr)  # fmt: skip
    if args.follow:
        return await _follow(client, argparse.Namespace(**{**vars(args), "batch_id": info.id}))
    _print(info, args)
    return 0


async def _status(client: BatchClient, args: argparse.Namespace) -> int:
    _print(await client.status(args.batch_id), args)
    return 0


async def _cancel(client: BatchClient, args: argparse.Namespace) -> int:
    info = await client.cancel(args.batch_id)
    if info.ended:
        print(f"{info.id} has ended already ({info.status})", file=sys.stderr)
    else:
        print(f"{info.id}: cancel sent", file=sys.stderr)
    _print(info, args)
    return 0


async def _retry(client: BatchClient, args: argparse.Namespace) -> int:
    window = parse_window(args.window) if args.window else None
    info = await client.retry(args.batch_id, window_s=window)
    print(f"{info.id}: round {info.round + 1} sent", file=sys.stderr)
    if args.follow:
        return await _follow(client, args)
    _print(info, args)
    return 0


async def _follow(client: BatchClient, args: argparse.Namespace) -> int:
    progress = None if args.json else BatchProgress()
    info = await client.follow(args.batch_id, progress)
    if progress is not None:
        progress.end()
    _print(info, args)
    return 0 if info.state is BatchState.COMPLETED else 1


async def _list(client: BatchClient, args: argparse.Namespace) -> int:
    batches = (await client.list())[: args.limit]
    if args.json:
        print(msgspec.json.encode(batches).decode())
        return 0
    if not batches:
        print("no batches yet")
    for b in batches:
        c = b.request_counts
        print(f"{b.id:<40} {b.status:<11} {c.completed:>9,} ok {c.failed:>7,} failed "
              f"of {c.total:>9,}  {b.endpoint} {b.model}")  # fmt: skip
    return 0


async def _results(client: BatchClient, args: argparse.Namespace) -> int:
    written = await client.results(args.batch_id, args.output, args.errors, format=args.format)
    if args.json:
        print(msgspec.json.encode(written).decode())
    else:
        print(f"{written.succeeded:,} rows in {', '.join(map(str, written.paths))}; "
              f"{written.failed:,} errors", file=sys.stderr)  # fmt: skip
    return 0


def _print(info: BatchInfo, args: argparse.Namespace) -> None:
    if args.json:
        print(msgspec.json.encode(info).decode())
        return
    c = info.request_counts
    print(f"{info.id}: {info.status}, {c.completed:,} completed, {c.failed:,} failed of "
          f"{c.total:,} ({info.endpoint}, {info.model}, round {info.round})")  # fmt: skip
