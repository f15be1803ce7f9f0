"""``fleet rerank QUERY [DOCUMENT ...]``: rank documents by relevance to a query (one per line
of standard input when none are given), best first, or as JSON for scripts."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from producer_sdk import FleetClient
from workers.ops.tenant_options import add_tenant_options

DEFAULT_RERANK_MODEL = "all-minilm-l6-v2-biencoder"


def add_rerank_command(
    sub: Any,
    connection_options: Callable[[argparse.ArgumentParser], None],
    client: Callable[[argparse.Namespace], FleetClient],
) -> None:
    cmd = sub.add_parser("rerank", help="rank documents by relevance to a query, best first")
    cmd.add_argument("query")
    cmd.add_argument(
        "documents", nargs="*", help="the documents (default: one per line of standard input)"
    )
    cmd.add_argument("--model", default=DEFAULT_RERANK_MODEL)
    cmd.add_argument("--top-n", type=int, help="only the best N")
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.add_argument("--timeout", type=float, default=60.0)
    connection_options(cmd)
    add_tenant_options(cmd)
    cmd.set_defaults(func=lambda args: asyncio.run(_rerank(args, client(args))))


async def _rerank(args: argparse.Namespace, client: FleetClient) -> int:
    documents: list[str] = args.documents or [
        line.rstrip("\n") for line in sys.stdin if line.strip()
    ]
    async with client as fleet:
        result = await fleet.rerank(
            args.query, documents, model=args.model, top_n=args.top_n, timeout_s=args.timeout
        )
    if args.json:
        print(msgspec.json.encode(result).decode())
        return 0
    for place, ranked in enumerate(result.results, 1):
        print(f"{place}. {ranked.relevance_score:.3f}  {documents[ranked.index]}")
    return 0
