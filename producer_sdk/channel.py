"""The client's side of Kafka: one producer, the private reply topic read by a ReplyRouter,
and the heartbeat that marks that topic alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.structs import RecordMetadata

from contracts.codec import AnyRequest, encode
from contracts.control import CancelJob, submission_of
from contracts.envelope import ReplyAddress
from contracts.errors import FleetError
from contracts.job_cost import job_cost
from contracts.names import CLIENT_HEARTBEAT_S, Header, Lane, control_topic, lane_topic
from contracts.signing import sign
from producer_sdk.errors import BrokerError, broker_errors
from producer_sdk.replies import ReplyRouter
from producer_sdk.sendable import check_request_id, check_size, producer_limit
from transport import topology
from transport.connection import KafkaConnection, passing, start_client
from transport.partitioning import key_partitioner
from transport.topic_admin import delete_topics
from transport.tracing import ProducerSpans, inject_headers

log = logging.getLogger(__name__)

# A request Kafka did not take for a passing reason (aiokafka had already retried it for its
# request timeout) is sent again after this, doubling up to the maximum, while its
# deadline lasts.
RESEND_FIRST_S = 0.25
RESEND_MAX_S = 4.0


class ClientChannel:
    """Opened by ``FleetClient.__aenter__``: its reply topic is read from its end before any
    request goes out. A private reply topic (the default) is created here, kept alive by a
    heartbeat and deleted by ``close``; a shared one (``reply_address.client`` set) must
    exist already, and is only read (docs/decisions/0016)."""

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
        self._reply = reply_address
        self._shared = reply_address.client is not None
        self._content_type = content_type
        # Not idempotent, as the workers' (decision 0014): a broker restart must not wedge it.
        self._producer = AIOKafkaProducer(
            **connection.options(),
            linger_ms=0,
            acks="all",
            enable_idempotence=False,
            partitioner=key_partitioner,
        )
        self._consumer = AIOKafkaConsumer(
            **connection.options(), group_id=None, enable_auto_commit=False
        )
        self.router = ReplyRouter(self._consumer, reply_address.client)
        self._spans = ProducerSpans()
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        topic = self._reply.topic
        try:
            with broker_errors(f"could not open the reply topic {topic!r}"):
                await self._open_clients()
        except BaseException:
            await self._stop_clients()
            raise
        self._tasks = [asyncio.create_task(self.router.run(), name=f"replies-{topic}")]
        if not self._shared:
            self._tasks.append(asyncio.create_task(self._heartbeat(), name=f"heartbeat-{topic}"))

    async def _open_clients(self) -> None:
        topic = self._reply.topic
        if not self._shared:
            await topology.create(self._connection, {topic: topology.PRIVATE_REPLIES})
        await start_client(self._producer, self._connection)
        await self._consumer.start()
        partitions = [TopicPartition(topic, p) for p in await self._reply_partitions()]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # positioned before any request goes out
            await self._consumer.position(tp)

    async def _reply_partitions(self) -> list[int]:
        """The partitions this client reads: its private topic's one; of a shared topic, the
        one its address names, or all of them."""
        if not self._shared:
            return [0]
        topic = self._reply.topic
        if topic not in await self._consumer.topics():  # the cluster's topics, fetched now
            raise FleetError(
                f"the shared reply topic {topic!r} does not exist: it is created beforehand "
                "by whoever may create topics (docs/operations.md), or leave reply_topic "
                "unset for a private reply topic of the client's own"
            )
        partitions = await self._producer.partitions_for(topic)
        if self._reply.partition is None:
            return sorted(partitions)
        if self._reply.partition not in partitions:
            raise FleetError(
                f"reply_partition {self._reply.partition} is not a partition of {topic!r} "
                f"(it has {len(partitions)})"
            )
        return [self._reply.partition]

    def reading(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs this client reads its replies from."""
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._stop_clients()
        if not self._shared:
            # An unreachable broker keeps the topic; retention empties it, `fleet janitor`
            # removes it.
            with contextlib.suppress(KafkaError, FleetError):
                await delete_topics(self._connection, [self._reply.topic])

    async def _stop_clients(self) -> None:
        await self._consumer.stop()
        await self._producer.stop()

    async def send_request(
        self, kind: str, request: AnyRequest, *, until: float, lane: Lane = "interactive"
    ) -> None:
        """Publish ``request`` on its kind's topic of ``lane``: the interactive one, or the
        batch lane the workers serve with what interactive work leaves. What the workers
        could not read or the broker would not take is refused first (RequestRefused).
        Kafka not taking it for a passing reason (a broker restarting, a partition without
        a leader yet), it is sent again until ``until`` (``time.monotonic()``): a request
        that was stored after all runs once (the workers' ledger knows its id).
        ``BrokerError`` when it was not taken."""
        topic = lane_topic(kind, lane, self._namespace)
        check_request_id(request.request_id)
        payload = encode(request, self._content_type)
        with self._spans.send(topic, request.request_id, len(payload)) as sent:
            sent.delivered(await self._send(kind, topic, request, payload, until))

    async def _send(
        self, kind: str, topic: str, request: AnyRequest, payload: bytes, until: float
    ) -> RecordMetadata:
        """Publish inside the producer span: the headers carry its context."""
        headers = inject_headers(
            [
                (Header.CONTENT_TYPE, self._content_type.encode()),
                (Header.REQUEST_ID, request.request_id.encode()),
                (Header.TENANT, request.tenant.encode()),
                (Header.COST, str(job_cost(request)).encode()),
            ]
        )
        if self._tenant_key is not None:
            headers.append((Header.TENANT_SIGNATURE, sign(self._tenant_key, payload)))
        key = request.request_id.encode()
        check_size(kind, key, payload, headers, producer_limit(self._producer))
        delay = RESEND_FIRST_S
        while True:
            try:
                # Never past the deadline: the caller is answered by then, sent or not.
                async with asyncio.timeout(max(until - time.monotonic(), 0.0)):
                    return await self._producer.send_and_wait(
                        topic, payload, key=key, headers=headers
                    )
            except TimeoutError:
                error: KafkaError = KafkaTimeoutError("not taken before the request's deadline")
            except KafkaError as exc:
                error = exc
            if not passing(error) or time.monotonic() + delay >= until:
                raise BrokerError(
                    f"could not publish {request.request_id!r} to {topic!r} (is Kafka "
                    f"reachable, and does the topic exist? `fleet worker {kind}` makes it)",
                    error,
                ) from error
            log.info("sending %s again: %r", request.request_id, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESEND_MAX_S)

    async def send_cancel(self, kind: str, request: AnyRequest) -> None:
        """Ask the workers to stop (or never start) a job nobody waits for any more. One
        control topic per kind serves both lanes: a worker runs both lanes' jobs.

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
                    self._reply.topic, b"", partition=0, headers=[(Header.HEARTBEAT, b"")]
                )
            except KafkaError as exc:
                log.warning("heartbeat to %s failed: %r", self._reply.topic, exc)
            await asyncio.sleep(CLIENT_HEARTBEAT_S)
