"""Batch jobs the fleet owns: submit a file, walk away, read the status from anywhere,
download the results (docs/decisions/0020-batch-jobs.md).

``BatchClient`` needs no reply topic: it writes a batch's input to a topic of its own and a
command to the coordinators, and reads the status and output topics. Nothing of a batch
lives in the client process: the client may exit right after ``submit``.

A client acts for one tenant: its batches run as that tenant, and it sees, cancels, retries
and downloads that tenant's batches only. With a ``tenant_key`` it signs its commands, as
coordinators with tenant keys require (decision 0031).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.batch import (
    DEFAULT_WINDOW_S,
    BatchCancel,
    BatchCommand,
    BatchInfo,
    BatchInputPage,
    BatchRetry,
    BatchState,
    BatchSubmit,
    RowError,
    StopReason,
    decode_info,
    decode_page,
    decode_results,
    initial_info,
)
from contracts.batch_tally import ResultTally
from contracts.codec import encode
from contracts.errors import ContractError, FleetError
from contracts.names import (
    DEFAULT_NAMESPACE,
    DEFAULT_TENANT,
    Header,
    batch_command_topic,
    batch_input_topic,
    batch_output_topic,
    batch_status_topic,
)
from contracts.signing import sign
from producer_sdk.batch.input_reader import BatchInputReader
from producer_sdk.batch.result_writer import OutputFormat, WrittenFiles, open_result_writer
from producer_sdk.errors import raises_broker_errors
from transport import topology
from transport.connection import KafkaConnection, start_client
from transport.consume import tail
from transport.topic_admin import TopicSpec, delete_topics
from transport.topic_reader import TopicMissing, read_to_end

# An input page stays well under the broker's default message limit (about 1 MiB).
PAGE_ROWS = 512
PAGE_BYTES = 512 * 1024

Progress = Callable[[BatchInfo], None]


class BatchNotFound(FleetError):
    """No batch of that id is on the status topic, or none of this client's tenant."""


class BatchClient:
    """``async with BatchClient(servers) as batches: info = await batches.submit(path)``."""

    def __init__(
        self,
        connection: KafkaConnection,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        tenant: str = DEFAULT_TENANT,
        tenant_key: str | bytes | None = None,
    ) -> None:
        self.connection = connection
        self.namespace = namespace
        self.tenant = tenant
        self._tenant_key = tenant_key.encode() if isinstance(tenant_key, str) else tenant_key
        self._producer: AIOKafkaProducer | None = None
        # Rounds this client started (retry) that `follow` waits for.
        self._rounds: dict[str, int] = {}
        # The command and status topics once made: a long-lived client (the HTTP gateway's)
        # asks the broker's admin API once, not on every submit and cancel.
        self._made: set[str] = set()

    @raises_broker_errors("connecting the batch client to Kafka")
    async def __aenter__(self) -> BatchClient:
        producer = AIOKafkaProducer(
            **self.connection.options(),
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            max_request_size=2 * 1024 * 1024,
        )
        await start_client(producer, self.connection)
        self._producer = producer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise FleetError("use the BatchClient inside `async with`")
        return self._producer

    @raises_broker_errors("submitting a batch")
    async def submit(
        self,
        path: Path | str,
        *,
        model: str | None = None,
        collection: str | None = None,
        dimensions: int | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        format: str | None = None,
        batch_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> BatchInfo:
        """Write the file's rows to the batch's input topic, then submit it; returns its
        status as submitted (``validating``). A bad row fails here, naming its line, before
        anything is submitted."""
        path = Path(path)
        batch_id = batch_id or f"batch_{uuid.uuid4().hex}"
        reader = BatchInputReader(path, format=format, model=model, dimensions=dimensions)
        topic = batch_input_topic(batch_id, self.namespace)
        await topology.create(self.connection, {topic: topology.batch_data()})
        try:
            pages = await self._write_pages(batch_id, topic, reader)
        except BaseException:
            with contextlib.suppress(Exception):
                await delete_topics(self.connection, [topic])
            raise
        if reader.endpoint is None or reader.rows == 0:
            raise ContractError(f"{path}: the file holds no rows")
        if reader.model is None:
            raise ContractError(f"{path}: no row names a model: give one (--model)")
        if collection is not None and reader.endpoint != "/v1/embeddings":
            raise ContractError("a collection is for embedding batches only")
        submit = BatchSubmit(
            batch_id=batch_id,
            endpoint=reader.endpoint,
            model=reader.model,
            rows=reader.rows,
            pages=pages,
            created_at=time.time(),
            completion_window_s=window_s,
            tenant=self.tenant,
            collection=collection,
            dimensions=reader.dimensions,
            input_file=path.name,
            metadata=dict(metadata or {}),
        )
        info = initial_info(submit)
        # Readable at once (the coordinator publishes every status after this one).
        await self._publish_status(info)
        await self._command(submit)
        return info

    async def _write_pages(self, batch_id: str, topic: str, reader: BatchInputReader) -> int:
        pending: list[asyncio.Future[object]] = []
        count = 0
        for count, rows in enumerate(reader.pages(max_rows=PAGE_ROWS, max_bytes=PAGE_BYTES), 1):
            page = BatchInputPage(batch_id=batch_id, page=count - 1, rows=rows)
            pending.append(await self.producer.send(topic, encode(page), partition=0))
            if len(pending) >= 64:  # bounded: a huge file never sits in memory at once
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return count

    async def _command(self, command: BatchCommand) -> None:
        topic = batch_command_topic(self.namespace)
        await self._make(topic, topology.BATCH_COMMANDS)
        payload = encode(command)
        headers = []
        if self._tenant_key is not None:  # what coordinators with tenant keys verify
            headers.append((Header.TENANT_SIGNATURE, sign(self._tenant_key, payload)))
        await self.producer.send_and_wait(
            topic, payload, key=command.batch_id.encode(), headers=headers
        )

    async def _publish_status(self, info: BatchInfo) -> None:
        topic = batch_status_topic(self.namespace)
        await self._make(topic, topology.BATCH_STATUS)
        await self.producer.send_and_wait(topic, encode(info), key=info.id.encode())

    async def _make(self, topic: str, spec: TopicSpec) -> None:
        if topic not in self._made:
            await topology.create(self.connection, {topic: spec})
            self._made.add(topic)

    @raises_broker_errors("reading a batch's status")
    async def status(self, batch_id: str) -> BatchInfo:
        batches = await self._read_status()
        if batch_id not in batches:
            raise BatchNotFound(
                f"no batch {batch_id!r} of tenant {self.tenant!r} (`fleet batch list` shows them)"
            )
        return batches[batch_id]

    @raises_broker_errors("listing batches")
    async def list(self) -> list[BatchInfo]:
        """Every batch of this client's tenant the status topic holds, newest first."""
        batches = await self._read_status()
        return sorted(batches.values(), key=lambda b: b.created_at, reverse=True)

    async def _read_status(self) -> dict[str, BatchInfo]:
        """The statuses of this client's tenant's batches. A batch's tenant is the one its
        first status names (as the coordinators hold it): a later record naming another
        is not that batch's."""
        batches: dict[str, BatchInfo] = {}
        topic = batch_status_topic(self.namespace)
        with contextlib.suppress(TopicMissing):  # no status topic yet: no batches
            async for record in read_to_end(self.connection, topic):
                with contextlib.suppress(ContractError):
                    info = decode_info(record.value or b"")
                    known = batches.get(info.id)
                    if known is None or known.owner == info.owner:
                        batches[info.id] = info
        return {id_: b for id_, b in batches.items() if b.owner == self.tenant}

    @raises_broker_errors("cancelling a batch")
    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask the batch's coordinator to stop it; rows finished stay downloadable."""
        info = await self.status(batch_id)
        if not info.ended:
            await self._command(
                BatchCancel(batch_id=batch_id, requested_at=time.time(), tenant=self.tenant)
            )
        return info

    @raises_broker_errors("retrying a batch")
    async def retry(self, batch_id: str, *, window_s: float | None = None) -> BatchInfo:
        """Run again the rows of an ended batch that failed with a retryable error (and
        those an expired or cancelled batch never ran), as its next round, within
        ``window_s`` (default: the batch's own completion window) from now."""
        info = await self.status(batch_id)
        if not info.ended:
            raise FleetError(f"batch {batch_id} is {info.status}: retry it once it has ended")
        command = BatchRetry(
            batch_id=batch_id,
            round=info.round + 1,
            requested_at=time.time(),
            completion_window_s=window_s,
            tenant=self.tenant,
        )
        await self._command(command)
        self._rounds[batch_id] = command.round
        return info

    @raises_broker_errors("following a batch")
    async def follow(
        self, batch_id: str, progress: Progress | None = None, *, timeout_s: float | None = None
    ) -> BatchInfo:
        """Wait until the batch has ended (after ``retry``: until the round it started has),
        calling ``progress`` with each status; its last status."""
        first = await self.status(batch_id)
        round_ = max(first.round, self._rounds.get(batch_id, 0))
        consumer = AIOKafkaConsumer(**self.connection.options(), group_id=None)
        await start_client(consumer, self.connection)
        tp = TopicPartition(batch_status_topic(self.namespace), 0)
        latest = first
        try:
            async with asyncio.timeout(timeout_s):
                async for records in tail(consumer, tp, start="beginning", wait_ms=1000):
                    for record in records:
                        with contextlib.suppress(ContractError):
                            info = decode_info(record.value or b"")
                            if info.id == batch_id and info.owner == first.owner:
                                latest = info
                    if progress is not None:
                        progress(latest)
                    if latest.ended and latest.round >= round_:
                        return latest
        finally:
            await consumer.stop()
        raise AssertionError("a tail ends only when its caller stops it")

    @raises_broker_errors("embedding a corpus as a batch")
    async def run_corpus(
        self,
        input_path: Path | str,
        output_path: Path | str,
        *,
        model: str,
        progress: Progress | None = None,
    ) -> BatchInfo:
        """Embed a corpus file into a results file (``format="corpus"``): submit it, follow
        it, download it. The batch id comes from the file's content and the model, so the
        same command again after Ctrl-C follows the batch the fleet kept running (or
        downloads it, once it has ended) instead of submitting it twice; an expired or
        cancelled one is retried, rows done staying done."""
        input_path = Path(input_path)
        batch_id = corpus_batch_id(input_path, model, self.tenant)
        try:
            info = await self.status(batch_id)
        except BatchNotFound:
            info = await self.submit(input_path, model=model, batch_id=batch_id)
        else:
            if info.state in (BatchState.CANCELLED, BatchState.EXPIRED):
                info = await self.retry(batch_id)
        final = await self.follow(info.id, progress)
        await self.results(batch_id, output_path, format="corpus")
        return final

    @raises_broker_errors("reading a batch's results")
    async def results(
        self,
        batch_id: str,
        output: Path | str,
        errors: Path | str | None = None,
        *,
        format: OutputFormat = "jsonl",
    ) -> WrittenFiles:
        """Download the rows finished so far: succeeded rows to ``output``, failed ones to
        ``errors`` (default: beside it, ``<name>.errors.jsonl``). Every custom_id of an
        ended batch is in exactly one of the two: rows it never ran (cancelled, expired,
        failed) as errors ``batch_cancelled`` / ``batch_expired`` / ``batch_failed``."""
        info = await self.status(batch_id)
        output = Path(output)
        errors = Path(errors) if errors is not None else output.with_suffix(".errors.jsonl")
        topic = batch_output_topic(batch_id, self.namespace)
        tally = ResultTally()
        with contextlib.suppress(TopicMissing):  # no output topic: nothing finished
            async for record in read_to_end(self.connection, topic):
                with contextlib.suppress(ContractError):
                    tally.add(record.offset, decode_results(record.value or b""))
        with open_result_writer(format, output, errors, batch=info) as writer:
            with contextlib.suppress(TopicMissing):
                async for record in read_to_end(self.connection, topic):
                    try:
                        results = decode_results(record.value or b"")
                    except ContractError:
                        continue
                    for row in tally.wins(record.offset, results):
                        writer.write(row, results.model)
            if info.ended:
                await self._write_never_ran(info, tally, writer.write_error)
        return writer.written

    async def _write_never_ran(
        self, info: BatchInfo, tally: ResultTally, write_error: Callable[[str, RowError], None]
    ) -> None:
        error = StopReason.of(info.state).row_error()
        pages: set[int] = set()
        async for record in read_to_end(
            self.connection, batch_input_topic(info.id, self.namespace)
        ):
            with contextlib.suppress(ContractError):
                page = decode_page(record.value or b"")
                if page.page in pages:
                    continue  # a page sent twice
                pages.add(page.page)
                for row in page.rows:
                    if not tally.has(row.custom_id):
                        write_error(row.custom_id, error)


def corpus_batch_id(input_path: Path, model: str, tenant: str = DEFAULT_TENANT) -> str:
    """Stable per corpus content, model and tenant (two tenants' batches never share an
    id, even for the same file)."""
    digest = hashlib.sha256(f"{tenant}\0{model}".encode())
    with input_path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return f"corpus-{digest.hexdigest()[:24]}"
