"""Tenants of batches and of the command line: which batch commands a coordinator takes,
how a key is given to the CLI, and the warning of a worker that takes tenants as declared."""

from __future__ import annotations

import logging
from typing import cast

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from contracts.batch import BatchCancel, BatchInfo, BatchRetry, RequestCounts
from contracts.codec import encode
from contracts.errors import ConfigError
from contracts.names import Header, batch_command_topic
from contracts.signing import sign
from transport.connection import KafkaConnection
from transport.records import Record
from workers.batch.authority import refusal
from workers.batch.status import StatusBoard
from workers.ops.cli import _parser
from workers.ops.tenant_options import tenant_key
from workers.tenants import warn_if_declared

KEYS = {"acme": b"acme-key", "globex": b"globex-key"}
ACMES = BatchInfo(
    id="b1", endpoint="/v1/embeddings", model="m", status="in_progress",
    request_counts=RequestCounts(total=1), created_at=0.0, expires_at=60.0,
    completion_window_s=60.0, pages=1, tenant="acme",
)  # fmt: skip


def _command(command: BatchCancel | BatchRetry, key: bytes | None) -> Record:
    value = encode(command)
    headers = [] if key is None else [(Header.TENANT_SIGNATURE, sign(key, value))]
    return ConsumerRecord(batch_command_topic(), 0, 1, 0, 0, b"b1", value, None, 2, 0, headers)


@pytest.mark.parametrize(
    ("tenant", "key", "keys", "why"),
    [
        ("acme", KEYS["acme"], KEYS, None),
        ("acme", KEYS["globex"], KEYS, "does not match tenant 'acme'"),
        ("acme", None, KEYS, "not signed"),
        ("globex", KEYS["globex"], KEYS, "belongs to another tenant than 'globex'"),
        # Tenants as declared: no signature, but one tenant's command never acts on
        # another's batch by mistake.
        ("acme", None, None, None),
        ("globex", None, None, "belongs to another tenant than 'globex'"),
    ],
    ids=["signed", "forged", "unsigned", "other tenant", "declared", "declared other tenant"],
)
def test_a_batch_takes_commands_of_its_own_tenant_only(
    tenant: str, key: bytes | None, keys: dict[str, bytes] | None, why: str | None
) -> None:
    for command in (
        BatchCancel(batch_id="b1", requested_at=1.0, tenant=tenant),
        BatchRetry(batch_id="b1", round=1, requested_at=1.0, tenant=tenant),
    ):
        refused = refusal(command, _command(command, key), ACMES, keys)
        assert (refused is None) if why is None else (why in (refused or "")), refused


def test_a_status_written_before_batches_had_tenants_is_defaults() -> None:
    old = msgspec.structs.replace(ACMES, tenant=None)
    assert old.owner == "default"
    command = BatchCancel(batch_id="b1", requested_at=1.0)
    assert refusal(command, _command(command, None), old, None) is None


def test_the_cli_takes_a_tenant_key_from_a_variable_or_a_file_never_written_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = _parser().parse_args(["chat", "hi", "--tenant", "acme", "--tenant-key", "env:K"])
    monkeypatch.setenv("K", "acme-key")
    assert (args.tenant, tenant_key(args)) == ("acme", "acme-key")
    monkeypatch.delenv("K")
    with pytest.raises(ConfigError, match="'K' is not set"):
        tenant_key(args)
    args.tenant_key = "acme-key"
    with pytest.raises(ConfigError, match="not the key itself"):
        tenant_key(args)
    for command in (["embed-corpus", "in", "out"], ["batch", "submit", "f"], ["batch", "list"]):
        args = _parser().parse_args([*command, "--tenant", "acme", "--tenant-key", "file:/k"])
        assert (args.tenant, args.tenant_key) == ("acme", "file:/k")


def test_a_worker_that_takes_tenants_as_declared_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="workers.tenants"):
        warn_if_declared(KEYS, "generate worker")
        assert caplog.records == []
        warn_if_declared(None, "generate worker")
    (line,) = caplog.records
    assert line.levelno == logging.WARNING
    assert "tenants are taken as declared" in line.getMessage()
    assert "[tenant_keys]" in line.getMessage()


async def test_a_status_naming_another_tenant_never_hands_a_batch_over() -> None:
    """Clients write statuses too (a submit's first): the coordinators keep a batch's tenant."""
    board = StatusBoard(KafkaConnection(), "unit.v1.batch.status", cast(AIOKafkaProducer, None))
    board._take(encode(ACMES))
    later = msgspec.structs.replace(ACMES, request_counts=RequestCounts(total=1, completed=1))
    board._take(encode(msgspec.structs.replace(later, tenant="globex")))
    assert board.get("b1") == ACMES
    board._take(encode(later))
    assert board.get("b1") == later
    await board.aclose()
