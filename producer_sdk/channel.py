"""The client's side of Kafka: one producer, the private reply topic read by a ReplyRouter,
and the heartbeat that marks that topic alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from contracts.codec import AnyRequest, encode
from contracts.control import CancelJob, submission_of
from contracts.envelope import ReplyAddress
from contracts.errors import FleetError
from contracts.names import CLIENT_HEARTBEAT_S, Header, control_topic, request_topic
from contracts.signing import sign
from producer_sdk.connection import KafkaConnection
from producer_sdk.replies import ReplyRouter
from producer_sdk.topics import delete_topics, ensure_topics
from producer_sdk.tracing import inject_headers

log = logging.getLogger(__name__)

# Replies older than this are useless: the reply topic keeps them no longer.
_REPLY_RETENTION_MS = 3_600_000


class ClientChannel:
    """Opened by ``FleetClient.__aenter__``: creates the reply topic and is positioned at its
    end before any request goes out; ``close`` deletes the topic."""

    def __init__(
        self,
        connection: KafkaConnection,
        namespace: str,
        reply_address: ReplyAddress,
        content_type: str,
        tenant_key: bytes | None = None,
    ) -> None:
        self._connection = connection
        self._tenant_key = tenant_key
        self._namespace = namespace
        self._reply_topic = reply_address.topic
        self._content_type = content_type
        # Not idempotent, as the workers' (decision 0014): a broker restart must not wedge it.
        self._producer = AIOKafkaProducer(
            **connection.options(), linger_ms=0, acks="all", enable_idempotence=False
        )
        self._consumer = AIOKafkaConsumer(
            **connection.options(), group_id=None, enable_auto_commit=False
        )
        self.router = ReplyRouter(self._consumer)
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        try:
            await ensure_topics(
                self._connection,
                {self._reply_topic: 1},
                configs={"retention.ms": str(_REPLY_RETENTION_MS)},
            )
        except BaseException:
            await self._consumer.stop()  # never started: only closes their resources
            await self._producer.stop()
            raise
        try:
            await self._producer.start()
            await self._consumer.start()
            tp = TopicPartition(self._reply_topic, 0)
            self._consumer.assign([tp])
            await self._consumer.seek_to_end(tp)
            await self._consumer.position(tp)  # positioned before any request goes out
        except BaseException:
            await self.close()
            raise
        self._tasks = [
            asyncio.create_task(self.router.run(), name=f"replies-{self._reply_topic}"),
            asyncio.create_task(self._heartbeat(), name=f"heartbeat-{self._reply_topic}"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._consumer.stop()
        await self._producer.stop()
        # An unreachable broker keeps the topic; retention empties it, `fleet janitor` removes it.
        with contextlib.suppress(KafkaError):
            await delete_topics(self._connection, [self._reply_topic])

    async def send_request(self, kind: str, request: AnyRequest) -> None:
        topic = request_topic(kind, self._namespace)
        headers = inject_headers(
            [
                (Header.CONTENT_TYPE, self._content_type.encode()),
                (Header.REQUEST_ID, request.request_id.encode()),
            ]
        )
        payload = encode(request, self._content_type)
        if self._tenant_key is not None:
            headers.append((Header.TENANT_SIGNATURE, sign(self._tenant_key, payload)))
        try:
            await self._producer.send_and_wait(
                topic, payload, key=request.request_id.encode(), headers=headers
            )
        except KafkaTimeoutError as exc:
            raise FleetError(
                f"could not publish to {topic!r} (does the topic exist? start a worker with "
                f"`fleet worker {kind}`): {exc!r}"
            ) from exc

    async def send_cancel(self, kind: str, request: AnyRequest) -> None:
        """Ask the workers to stop (or never start) a job nobody waits for any more.

        Best effort: a cancel that is lost costs only the work it would have saved.
        """
        message = CancelJob(
            request_id=request.request_id,
            tenant=request.tenant,
            submission=submission_of(request),
        )
        payload = encode(message)
        headers = []
        if self._tenant_key is not None:
            headers.append((Header.TENANT_SIGNATURE, sign(self._tenant_key, payload)))
        try:
            await asyncio.wait_for(
                self._producer.send(
                    control_topic(kind, self._namespace),
                    payload,
                    key=request.request_id.encode(),
                    headers=headers,
                ),
                timeout=2.0,
            )
        except (KafkaError, TimeoutError, RuntimeError) as exc:
            log.debug("could not send the cancel of %s: %r", request.request_id, exc)

    async def _heartbeat(self) -> None:
        """Mark the reply topic alive, so `fleet janitor` never takes a live client's topic."""
        while True:
            try:
                await self._producer.send(
                    self._reply_topic, b"", partition=0, headers=[(Header.HEARTBEAT, b"")]
                )
            except KafkaError as exc:
                log.warning("heartbeat to %s failed: %r", self._reply_topic, exc)
            await asyncio.sleep(CLIENT_HEARTBEAT_S)
