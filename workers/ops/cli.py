"""The ``fleet`` command: run a worker, chat with the fleet, run the local demo, print schemas."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from contracts.asyncapi import asyncapi_text
from contracts.batch import BatchState
from contracts.errors import ConfigError, FleetError
from contracts.names import (
    BATCH_KIND,
    DEFAULT_NAMESPACE,
    DEFAULT_TENANT,
    JOB_KINDS,
    WORKER_KINDS,
    DeadLetterReason,
)
from contracts.schema import json_schema_text
from producer_sdk import FleetClient, KafkaSecurity
from transport.connection import DEFAULT_BOOTSTRAP
from workers.batch.coordinator import BatchCoordinator
from workers.health_port import HealthSocket
from workers.log_dedup import hold_back_repeats
from workers.ops.batch_cli import add_batch_commands
from workers.ops.batch_progress import BatchProgress
from workers.ops.dead_letters import DeadLetterFilter, parse_duration
from workers.ops.local_fleet import (
    LOG_DIR,
    WATCH_INTERVAL_S,
    AddressBoard,
    LocalWorker,
    Supervisor,
    model_threads_env,
    start_needed_services,
    stop_all,
    stop_on_sigterm,
    wait_ready,
)
from workers.ops.rerank_cli import add_rerank_command
from workers.ops.speak_cli import add_speak_command
from workers.ops.tenant_options import add_tenant_options, tenant_key
from workers.ops.terminal import print_stream
from workers.settings import WorkerSettings, load_settings

if TYPE_CHECKING:
    from gateway import Gateway
    from providers.redis_client import RedisClient
    from workers.app import Worker

DEFAULT_MODEL = "smollm2-135m-instruct"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("FLEET_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aiokafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # One line per outage, not one per reconnect attempt.
    hold_back_repeats()
    try:
        return int(args.func(args))
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    worker = sub.add_parser("worker", help="run one category's worker (a consumer-group member)")
    worker.add_argument("kind", choices=WORKER_KINDS, help="a job kind, or batch (the coordinator)")
    worker.add_argument("--config", type=Path, help="TOML settings file")
    worker.add_argument("--concurrency", type=int, help="jobs in flight at once")
    worker.add_argument(
        "--health-port", type=int, help="serve /healthz, /readyz, /metrics (0: any free port)"
    )
    worker.add_argument(
        "--health-port-file", type=Path, metavar="PATH",
        help="write the health port to PATH once it serves (for --health-port 0)",
    )  # fmt: skip
    worker.set_defaults(func=_cmd_worker)

    dev = sub.add_parser("dev", help="run the whole local fleet: one worker per kind")
    dev.add_argument("--kinds", nargs="+", choices=WORKER_KINDS, default=list(WORKER_KINDS))
    dev.add_argument("--config", type=Path, help="TOML settings file for every worker")
    _health_base_port_option(dev)
    dev.set_defaults(func=_cmd_dev)

    for name, helptext in (
        ("chat", "send one generate request and stream the answer"),
        ("demo", "start the local fleet and send it one real job of each kind"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument(
            "prompt", nargs="?", default="Explain in two sentences what Apache Kafka is."
        )
        cmd.add_argument("--model", default=DEFAULT_MODEL)
        cmd.add_argument("--max-tokens", type=int, default=200)
        cmd.add_argument("--temperature", type=float, default=0.2)
        cmd.add_argument("--session", help="session id: the worker keeps the conversation in Redis")
        _connection_options(cmd)
        cmd.add_argument("--timeout", type=float, default=120.0)
    sub.choices["chat"].set_defaults(func=_cmd_chat)
    add_tenant_options(sub.choices["chat"])
    sub.choices["demo"].set_defaults(func=_cmd_demo)
    _health_base_port_option(sub.choices["demo"])

    add_speak_command(sub, _connection_options, _client)

    corpus = sub.add_parser(
        "embed-corpus",
        help="embed a corpus ({custom_id, text} per line) as a batch the fleet owns: "
        "submit, follow, download; the same command again picks it up",
    )
    corpus.add_argument("input", type=Path)
    corpus.add_argument("output", type=Path)
    corpus.add_argument("--model", default="all-minilm-l6-v2")
    _connection_options(corpus)
    add_tenant_options(corpus)
    corpus.set_defaults(func=_cmd_embed_corpus)

    add_batch_commands(sub, _connection_options)
    add_rerank_command(sub, _connection_options, _client)

    lag = sub.add_parser("lag", help="show each kind's consumer lag per partition")
    lag.add_argument("--config", type=Path, help="TOML settings file")
    lag.set_defaults(func=_cmd_lag)

    status = sub.add_parser(
        "status",
        help="show what the fleet knows of one request id, or (--fairness) of its tenants",
    )
    status.add_argument("request_id", nargs="?")
    status.add_argument(
        "--fairness",
        action="store_true",
        help="each live worker's lanes: per tenant, its weight, jobs waiting and running, "
        "credit and cost served (of --kind, or of every kind)",
    )
    status.add_argument("--kind", choices=JOB_KINDS, help="its job kind (default generate)")
    status.add_argument("--tenant", default=DEFAULT_TENANT, help="the tenant that sent it")
    status.add_argument("--config", type=Path, help="TOML settings file")
    status.set_defaults(func=_cmd_status)

    budgets = sub.add_parser(
        "budgets", help="show each tenant's spend, reservations and limit in this period"
    )
    budgets.add_argument("--tenant", help="only this tenant's budget")
    budgets.add_argument("--config", type=Path, help="TOML settings file")
    budgets.set_defaults(func=_cmd_budgets)

    janitor = sub.add_parser(
        "janitor", help="delete reply topics of clients that died without closing"
    )
    janitor.add_argument("--older-than", type=float, default=900.0, help="silent seconds")
    janitor.add_argument("--dry-run", action="store_true", help="list them, delete nothing")
    janitor.add_argument("--config", type=Path, help="TOML settings file")
    janitor.set_defaults(func=_cmd_janitor)

    dlq = sub.add_parser(
        "dlq", help="list a kind's dead letters, or replay them once their cause is fixed"
    )
    dlq_sub = dlq.add_subparsers(required=True, metavar="ACTION")
    dlq_list = dlq_sub.add_parser("list", help="print the dead letters, and a count per reason")
    dlq_replay = dlq_sub.add_parser(
        "replay",
        help="publish the original requests again (once: a second replay skips them); "
        "exits 1 when some could not be replayed",
    )
    for cmd in (dlq_list, dlq_replay):
        cmd.add_argument("kind", choices=JOB_KINDS)
        reasons = [r.value for r in DeadLetterReason]
        cmd.add_argument("--reason", action="append", choices=reasons, metavar="REASON",
                         help=f"only this reason (repeatable): {', '.join(reasons)}")  # fmt: skip
        since = "only those dead-lettered this recently (90s, 15m, 2h, 7d)"
        cmd.add_argument("--since", type=parse_duration, metavar="DURATION", help=since)
        cmd.add_argument("--config", type=Path, help="TOML settings file")
    dlq_list.add_argument("--limit", type=int, help="show the newest N (the summary counts all)")
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per line")
    dlq_list.set_defaults(func=_cmd_dlq_list)
    ids = "only these request ids"
    dlq_replay.add_argument("--request-id", nargs="+", action="extend", metavar="ID", help=ids)
    dlq_replay.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    again = "replay again what an earlier replay dealt with"
    dlq_replay.add_argument("--from-start", action="store_true", help=again)
    dlq_replay.set_defaults(func=_cmd_dlq_replay)

    models = sub.add_parser(
        "models",
        help="list the models the fleet serves: provider, context, capabilities, prices",
    )
    models.add_argument("--config", type=Path, help="TOML settings file")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=_cmd_models)

    gateway = sub.add_parser(
        "gateway", help="serve the OpenAI HTTP API: requests become fleet jobs"
    )
    gateway.add_argument("--config", type=Path, help="TOML settings file (its [gateway] table)")
    gateway.add_argument("--host", help="address to bind (default: [gateway] host)")
    gateway.add_argument("--port", type=int, help="port to bind, 0 for any free one")
    gateway.set_defaults(func=_cmd_gateway)

    schema = sub.add_parser("schema", help="print the JSON Schema of the wire contract")
    schema.set_defaults(func=lambda _args: print(json_schema_text(), end="") or 0)
    asyncapi = sub.add_parser(
        "asyncapi", help="print the AsyncAPI 3.0 document of the fleet's topics and messages"
    )
    asyncapi.add_argument(
        "--namespace", default=os.environ.get("FLEET_NAMESPACE", DEFAULT_NAMESPACE)
    )
    asyncapi.set_defaults(func=lambda args: print(asyncapi_text(args.namespace), end="") or 0)
    return parser


def _health_base_port_option(cmd: argparse.ArgumentParser) -> None:
    # No default port: a fixed one may be taken on this machine (by anything, even a client
    # socket), so the workers take ports the OS picks unless a person asks for fixed ones.
    cmd.add_argument(
        "--health-base-port", type=int, metavar="N",
        help="health ports N, N+1, ... in the order of the kinds (default: any free ports)",
    )  # fmt: skip


def _connection_options(cmd: argparse.ArgumentParser) -> None:
    env = os.environ.get
    cmd.add_argument(
        "--bootstrap-servers", default=env("FLEET_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP)
    )
    cmd.add_argument("--namespace", default=env("FLEET_NAMESPACE", DEFAULT_NAMESPACE))


def _client(args: argparse.Namespace) -> FleetClient:
    """A client for --bootstrap-servers and --namespace, secured as the FLEET_SECURITY_PROTOCOL,
    FLEET_SASL_* and FLEET_SSL_* variables say, acting as --tenant (signed with
    --tenant-key)."""
    return FleetClient(
        args.bootstrap_servers,
        security=KafkaSecurity.from_env(),
        namespace=args.namespace,
        tenant=args.tenant,
        tenant_key=tenant_key(args),
    )


def _cmd_worker(args: argparse.Namespace) -> int:
    from transport.telemetry_export import configure_from_env  # the OTel SDK: workers only

    settings = load_settings(
        args.config, concurrency=args.concurrency, health_port=args.health_port
    )
    # Before the worker is built: its links ask once whether the process traces. The SDK's
    # providers send what they still hold when the process exits.
    configure_from_env(f"fleet-worker-{args.kind}")
    if settings.health_port is None:
        if args.health_port_file is not None:
            raise ConfigError("--health-port-file needs a health port: --health-port P (0: any)")
        asyncio.run(_run_worker(args.kind, settings, None))
        return 0
    # Bound first: a taken port is one line now, not a traceback after the model loads.
    health = HealthSocket(settings.health_port, port_file=args.health_port_file)
    try:
        asyncio.run(_run_worker(args.kind, settings, health))
    finally:
        health.close()  # the server closed it already, unless the worker never served
    return 0


async def _run_worker(kind: str, settings: WorkerSettings, health: HealthSocket | None) -> None:
    from workers.app import build_worker  # imports the model libraries

    worker: Worker | BatchCoordinator
    if kind == BATCH_KIND:
        worker = BatchCoordinator(settings, health_socket=health)
    else:
        worker = await build_worker(kind, settings, health_socket=health)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


def _cmd_dev(args: argparse.Namespace) -> int:
    stop_on_sigterm()
    settings = load_settings(args.config)
    start_needed_services(settings)
    base = args.health_base_port
    threads = model_threads_env(args.kinds, settings)
    workers = [
        LocalWorker(kind, None if base is None else base + i, args.config, env=threads)
        for i, kind in enumerate(args.kinds)
    ]
    print(f"[fleet] starting {', '.join(args.kinds)} (logs in {LOG_DIR})", flush=True)
    addresses = AddressBoard(workers, lambda text: print(f"[fleet] {text}", flush=True))
    try:
        wait_ready(workers, on_poll=addresses.update)
        print("[fleet] all workers ready; Ctrl-C stops the fleet", flush=True)
        supervisor = Supervisor(workers, lambda text: print(f"fleet: {text}", file=sys.stderr))
        while True:
            supervisor.tick()
            addresses.update()  # a restarted worker serves on a new port
            time.sleep(WATCH_INTERVAL_S)
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all(workers)


def _cmd_chat(args: argparse.Namespace) -> int:
    return asyncio.run(_chat(args))


async def _chat(args: argparse.Namespace) -> int:
    async with _client(args) as fleet:
        events = fleet.stream_generate(
            args.prompt,
            model=args.model,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            session_id=args.session,
            timeout_s=args.timeout,
        )
        await print_stream(events, summary=sys.stderr)
    return 0


def _cmd_embed_corpus(args: argparse.Namespace) -> int:
    return asyncio.run(_embed_corpus(args))


async def _embed_corpus(args: argparse.Namespace) -> int:
    progress = BatchProgress()
    async with _client(args) as fleet:
        final = await fleet.submit_corpus(
            args.input, args.output, model=args.model, progress=progress
        )
    progress.end()
    print(f"[fleet] {final.id}: {final.status}, results in {args.output}", file=sys.stderr)
    return 0 if final.state is BatchState.COMPLETED and final.request_counts.failed == 0 else 1


def _cmd_lag(args: argparse.Namespace) -> int:
    from workers.ops.inspect import consumer_lag

    rows = asyncio.run(consumer_lag(load_settings(args.config)))
    if not rows:
        print("no request topics yet: start a worker first")
        return 0
    print(f"{'kind':<11} {'topic':<11} {'partition':>9} {'committed':>10} {'end':>10} "
          f"{'lag':>8}  group")  # fmt: skip
    for row in rows:
        committed = "-" if row.committed is None else str(row.committed)
        print(f"{row.kind:<11} {row.source:<11} {row.partition:>9} {committed:>10} {row.end:>10} "
              f"{row.lag:>8}  {row.group}")  # fmt: skip
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from workers.ops.inspect import fairness_state, job_state

    settings = load_settings(args.config)
    if args.fairness:
        kinds = [args.kind] if args.kind else list(JOB_KINDS)
        print(asyncio.run(fairness_state(settings, kinds)))
        return 0
    if args.request_id is None:
        raise ConfigError("fleet status needs a request id, or --fairness")
    kind = args.kind or "generate"
    state = asyncio.run(job_state(settings, args.request_id, kind=kind, tenant=args.tenant))
    if state.done:
        word = "done (its final reply is stored; a repeat gets it back)"
    elif state.running:
        word = "running"
    elif state.attempts:
        word = "started before, not running now (waiting for a retry or a redelivery)"
    else:
        word = "unknown to the fleet (never started, or its record expired)"
    print(f"{state.request_id}: {word}; attempts: {state.attempts}")
    return 0


def _cmd_budgets(args: argparse.Namespace) -> int:
    from workers.ops.inspect import budget_standings

    rows = asyncio.run(budget_standings(load_settings(args.config), args.tenant))
    if not rows:
        print("no budgets: the settings have no [budgets.<tenant>] table")
        return 0
    print(f"{'tenant':<20} {'period (UTC)':<12} {'spent $':>12} {'reserved $':>12} "
          f"{'holds':>6} {'limit $':>12} {'left $':>12}")  # fmt: skip
    for row in rows:
        left = max(row.limit_usd - row.spent_usd - row.reserved_usd, 0.0)
        print(f"{row.tenant:<20} {row.period:<12} {row.spent_usd:>12.6f} "
              f"{row.reserved_usd:>12.6f} {row.holds:>6} {row.limit_usd:>12.6f} "
              f"{left:>12.6f}")  # fmt: skip
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from workers.ops.models import list_models, render  # creates providers

    listing = asyncio.run(list_models(load_settings(args.config)))
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(listing).decode()))
    else:
        print(render(listing))
    return 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    from providers.rate_limits import RedisRateLimiter
    from providers.redis_client import connect_redis
    from transport.telemetry_export import configure_from_env
    from workers.ops.models import list_models

    try:
        from gateway import Gateway
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the gateway needs {exc.name}: pip install 'ai-job-fleet[gateway]'"
        ) from exc

    settings = load_settings(args.config)
    if not settings.gateway.api_keys:
        raise ConfigError("the gateway has no API keys: set [gateway] api_keys (tenant = key)")
    # Before the gateway is built: it asks once whether the process traces.
    configure_from_env("fleet-gateway")
    # The catalogue's models as `fleet models` lists them: what the workers serve.
    listing = asyncio.run(list_models(settings))
    limits = settings.gateway.rate_limits
    redis = connect_redis(settings.redis_url) if limits else None
    # Keyed by namespace and tenant: every replica of this fleet's gateway shares a
    # tenant's count, and another fleet on the same Redis has its own.
    rates = {
        tenant: RedisRateLimiter(redis, f"gateway:{settings.namespace}:{tenant}", limit)
        for tenant, limit in limits.items()
        if redis is not None
    }
    server = Gateway(
        settings.connection,
        namespace=settings.namespace,
        api_keys=settings.gateway.api_keys,
        tenant_keys=settings.tenant_keys,
        models={row.model: row.kind for row in listing.models},
        limits=settings.gateway.limits,
        rate_limits=rates,
        host=args.host or settings.gateway.host,
        port=settings.gateway.port if args.port is None else args.port,
    )
    # The bound port, read by whoever started the gateway on port 0.
    print(f"fleet gateway: serving http://{server.host}:{server.port}/v1", flush=True)
    asyncio.run(_serve_gateway(server, redis))
    return 0


async def _serve_gateway(server: Gateway, redis: RedisClient | None) -> None:
    try:
        await server.serve()
    finally:
        if redis is not None:
            await redis.aclose()


def _cmd_janitor(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from transport.topic_admin import delete_topics
    from workers.ops.inspect import stamp_unseen, survey_reply_topics

    settings = load_settings(args.config)
    survey = asyncio.run(survey_reply_topics(settings, args.older_than))
    for topic in survey.stale:
        print(f"{topic.topic}: silent {topic.silent_s:,.0f}s")
    for name in survey.empty:
        print(f"{name}: empty (age unknown: stamped now, judged by a later run)")
    count = len(survey.stale)
    if not args.dry_run:
        if survey.stale:
            stale = [t.topic for t in survey.stale]
            # A refusal (no right to delete, say) ends the command naming it, not a traceback;
            # one deleted meanwhile by someone else is not counted.
            try:
                count = len(asyncio.run(delete_topics(settings.connection, stale)))
            except KafkaError as exc:
                raise FleetError(f"the gone clients' reply topics were not deleted: {exc}") from exc
        if survey.empty:
            asyncio.run(stamp_unseen(settings, survey.empty))
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {count} reply topic(s) of clients gone for {args.older_than:g}s")
    return 0


def _cmd_dlq_list(args: argparse.Namespace) -> int:
    from workers.ops.dead_letter_report import print_dead_letters

    selection = DeadLetterFilter.of(args.reason, since_s=args.since)
    settings = load_settings(args.config)
    asyncio.run(
        print_dead_letters(settings, args.kind, selection, limit=args.limit, as_json=args.json)
    )
    return 0


def _cmd_dlq_replay(args: argparse.Namespace) -> int:
    from workers.ops.dead_letter_replay import ReplayOptions, replay_dead_letters
    from workers.ops.dead_letter_report import outcome_line, totals_line

    selection = DeadLetterFilter.of(args.reason, args.request_id, args.since)
    options = ReplayOptions(selection=selection, dry_run=args.dry_run, from_start=args.from_start)
    settings = load_settings(args.config)
    totals = asyncio.run(
        replay_dead_letters(settings, args.kind, options, lambda o: print(outcome_line(o)))
    )
    print(totals_line(totals, dry_run=args.dry_run))
    return 1 if totals.skipped else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from workers.ops.demo import run_demo

    stop_on_sigterm()
    return run_demo(
        args.prompt, args.bootstrap_servers, args.namespace, args.health_base_port, args.max_tokens
    )


if __name__ == "__main__":
    raise SystemExit(main())
