"""FleetClient: what a backend service uses to send jobs to the fleet and get answers back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError

from contracts.codec import AnyRequest, encode
from contracts.envelope import ReplyAddress
from contracts.errors import FleetError
from contracts.generate import ChatMessage, GenerateRequest
from contracts.names import (
    DEFAULT_NAMESPACE,
    DEFAULT_TENANT,
    ContentType,
    Header,
    reply_topic,
    request_topic,
)
from contracts.replies import ErrorReply, Final, GenerateResult, ReplyChunk, TextDelta
from producer_sdk.errors import DeadlineExceeded, FleetRequestError, NotConnected
from producer_sdk.replies import ReplyRouter, StreamRestarted

GenerateEvent = TextDelta | StreamRestarted | GenerateResult

# Replies older than this are useless: the reply topic keeps them no longer.
_REPLY_RETENTION_MS = 3_600_000


class FleetClient:
    """``async with FleetClient(bootstrap_servers) as fleet: ...``

    On entry the client creates its private reply topic and starts listening on it; on exit
    it deletes the topic.
    """

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:19092",
        *,
        namespace: str = DEFAULT_NAMESPACE,
        tenant: str = DEFAULT_TENANT,
        client_id: str | None = None,
        default_timeout_s: float = 120.0,
        content_type: str = ContentType.MSGPACK,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.namespace = namespace
        self.tenant = tenant
        self.client_id = client_id or uuid.uuid4().hex
        self.default_timeout_s = default_timeout_s
        self.content_type = content_type
        self.reply_address = ReplyAddress(topic=reply_topic(self.client_id, namespace), partition=0)
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._router: ReplyRouter | None = None
        self._router_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._create_reply_topic()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            linger_ms=0,
            acks="all",
            enable_idempotence=True,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False
        )
        try:
            await self._producer.start()
            await self._consumer.start()
            tp = TopicPartition(self.reply_address.topic, 0)
            self._consumer.assign([tp])
            await self._consumer.seek_to_end(tp)
            await self._consumer.position(tp)  # positioned before any request goes out
        except BaseException:
            await self._shutdown()
            raise
        self._router = ReplyRouter(self._consumer)
        self._router_task = asyncio.create_task(
            self._router.run(), name=f"replies-{self.client_id}"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    @property
    def router(self) -> ReplyRouter:
        if self._router is None:
            raise NotConnected("use the client inside `async with FleetClient(...)`")
        return self._router

    async def stream_generate(
        self,
        messages: str | Sequence[ChatMessage],
        *,
        model: str,
        session_id: str | None = None,
        provider: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: list[str] | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[GenerateEvent]:
        """Yield text deltas as the model writes them, then the GenerateResult.

        A StreamRestarted event means the job was redone from the start: drop the text
        received so far. An error reply raises FleetRequestError.
        """
        if isinstance(messages, str):
            messages = [ChatMessage(role="user", content=messages)]
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        request = GenerateRequest(
            request_id=request_id or uuid.uuid4().hex,
            tenant=self.tenant,
            reply_to=self.reply_address,
            deadline_ms=int((time.time() + timeout) * 1000),
            model=model,
            messages=list(messages),
            provider=provider,
            session_id=session_id,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
        )
        async for item in self._call("generate", request, timeout):
            if isinstance(item, TextDelta | StreamRestarted | GenerateResult):
                yield item

    async def generate(
        self, messages: str | Sequence[ChatMessage], *, model: str, **options: object
    ) -> GenerateResult:
        """The complete answer of a generate request."""
        result: GenerateResult | None = None
        async for item in self.stream_generate(messages, model=model, **options):  # type: ignore[arg-type]
            if isinstance(item, GenerateResult):
                result = item
        assert result is not None  # _call ends only on a Final or an exception
        return result

    async def _call(
        self, kind: str, request: AnyRequest, timeout_s: float
    ) -> AsyncIterator[ReplyChunk | StreamRestarted]:
        router = self.router
        inbox = router.open(request.request_id)
        deadline = time.monotonic() + timeout_s
        try:
            await self._send(kind, request)
            while True:
                remaining = deadline - time.monotonic()
                try:
                    item = await asyncio.wait_for(inbox.get(), timeout=max(remaining, 0))
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"{kind} request {request.request_id} got no complete answer "
                        f"within {timeout_s:g}s"
                    ) from None
                if isinstance(item, ErrorReply):
                    raise FleetRequestError(item)
                yield item
                if isinstance(item, Final):
                    return
        finally:
            router.close(request.request_id)

    async def _send(self, kind: str, request: AnyRequest) -> None:
        if self._producer is None:
            raise NotConnected("use the client inside `async with FleetClient(...)`")
        topic = request_topic(kind, self.namespace)
        headers = [
            (Header.CONTENT_TYPE, self.content_type.encode()),
            (Header.REQUEST_ID, request.request_id.encode()),
        ]
        try:
            await self._producer.send_and_wait(
                topic,
                encode(request, self.content_type),
                key=request.request_id.encode(),
                headers=headers,
            )
        except KafkaTimeoutError as exc:
            raise FleetError(
                f"could not publish to {topic!r} (does the topic exist? start a worker with "
                f"`fleet worker {kind}`): {exc!r}"
            ) from exc

    async def _create_reply_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        self.reply_address.topic,
                        num_partitions=1,
                        replication_factor=1,
                        topic_configs={"retention.ms": str(_REPLY_RETENTION_MS)},
                    )
                ]
            )
        finally:
            await admin.close()

    async def _delete_reply_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        try:
            await admin.start()
            await admin.delete_topics([self.reply_address.topic])
        except KafkaError:
            pass  # retention removes what an unreachable broker kept
        finally:
            await admin.close()

    async def _shutdown(self) -> None:
        if self._router_task is not None:
            self._router_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._router_task
            self._router_task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self._router = None
        await self._delete_reply_topic()
