"""FleetClient: what a backend service uses to send jobs to the fleet and get answers back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, KafkaTimeoutError

from contracts.codec import AnyRequest, encode
from contracts.control import CancelJob, submission_of
from contracts.embed import EmbedRequest
from contracts.envelope import ReplyAddress
from contracts.errors import FleetError
from contracts.generate import ChatMessage, GenerateRequest
from contracts.names import (
    CLIENT_HEARTBEAT_S,
    DEFAULT_NAMESPACE,
    DEFAULT_TENANT,
    ContentType,
    Header,
    control_topic,
    reply_topic,
    request_topic,
)
from contracts.replies import (
    EmbedResult,
    ErrorReply,
    Final,
    GenerateResult,
    ReplyChunk,
    TextDelta,
    TranscribeResult,
    TranscriptSegment,
    VectorResult,
)
from contracts.transcribe import TranscribeRequest
from contracts.vectors import (
    Metadata,
    VectorDeleteRequest,
    VectorQueryRequest,
    VectorRecord,
    VectorUpsertRequest,
)
from producer_sdk.batch import CorpusJob, CorpusProgress
from producer_sdk.errors import DeadlineExceeded, FleetRequestError, NotConnected
from producer_sdk.replies import ReplyRouter, StreamRestarted
from producer_sdk.topics import ensure_topics
from producer_sdk.tracing import inject_headers

log = logging.getLogger(__name__)

GenerateEvent = TextDelta | StreamRestarted | GenerateResult
TranscribeEvent = TranscriptSegment | StreamRestarted | TranscribeResult

F = TypeVar("F", bound=Final)


class GenerateOptions(TypedDict, total=False):
    """Options of ``generate`` and ``stream_generate`` besides the messages and model."""

    session_id: str | None  # the worker keeps this conversation's history in Redis
    provider: str | None  # a chat provider by name; None routes by model
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: list[str] | None
    timeout_s: float | None  # the deadline, from now; default: the client's
    request_id: str | None  # default: a new uuid; the same id twice runs the model once


class _Head(TypedDict):
    request_id: str
    tenant: str
    reply_to: ReplyAddress
    deadline_ms: int


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
        self._heartbeat_task: asyncio.Task[None] | None = None

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
        self._heartbeat_task = asyncio.create_task(
            self._heartbeat(), name=f"heartbeat-{self.client_id}"
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
        **options: Unpack[GenerateOptions],
    ) -> AsyncGenerator[GenerateEvent, None]:
        """Yield text deltas as the model writes them, then the GenerateResult.

        A StreamRestarted event means the job was redone from the start: drop the text
        received so far. An error reply raises FleetRequestError.
        """
        request, timeout = self._generate_request(messages, model, options, stream=True)
        async for item in self._call("generate", request, timeout):
            if isinstance(item, TextDelta | StreamRestarted | GenerateResult):
                yield item

    async def generate(
        self,
        messages: str | Sequence[ChatMessage],
        *,
        model: str,
        **options: Unpack[GenerateOptions],
    ) -> GenerateResult:
        """The complete answer of a generate request, sent as one reply (no deltas)."""
        request, timeout = self._generate_request(messages, model, options, stream=False)
        return await self._final("generate", request, timeout, GenerateResult)

    def _generate_request(
        self,
        messages: str | Sequence[ChatMessage],
        model: str,
        options: GenerateOptions,
        *,
        stream: bool,
    ) -> tuple[GenerateRequest, float]:
        head, timeout = self._head(options.get("request_id"), options.get("timeout_s"))
        if isinstance(messages, str):
            messages = [ChatMessage(role="user", content=messages)]
        request = GenerateRequest(
            **head,
            model=model,
            messages=list(messages),
            provider=options.get("provider"),
            session_id=options.get("session_id"),
            max_tokens=options.get("max_tokens"),
            temperature=options.get("temperature"),
            top_p=options.get("top_p"),
            stop=options.get("stop"),
            stream=stream,
        )
        return request, timeout

    async def embed(
        self,
        texts: str | Sequence[str],
        *,
        model: str,
        provider: str | None = None,
        custom_ids: Sequence[str] | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> EmbedResult:
        """Vectors for one text or a list of texts, in input order."""
        head, timeout = self._head(request_id, timeout_s)
        request = EmbedRequest(
            **head,
            model=model,
            texts=[texts] if isinstance(texts, str) else list(texts),
            provider=provider,
            custom_ids=list(custom_ids) if custom_ids is not None else None,
        )
        return await self._final("embed", request, timeout, EmbedResult)

    async def submit_corpus(
        self,
        input_path: Path | str,
        output_path: Path | str,
        *,
        model: str,
        chunk_size: int = 64,
        max_in_flight: int = 16,
        timeout_s: float | None = None,
        progress: Callable[[CorpusProgress], None] | None = None,
    ) -> CorpusProgress:
        """Embed a JSONL corpus (``{"custom_id", "text"}`` per line) into a results JSONL.

        Resumable: run it again with the same files after a cancel or a crash and it sends
        only what is missing (see ``producer_sdk.batch``).
        """

        async def embed_chunk(texts: list[str], request_id: str) -> EmbedResult:
            return await self.embed(texts, model=model, timeout_s=timeout_s, request_id=request_id)

        job = CorpusJob(
            embed_chunk,
            Path(input_path),
            Path(output_path),
            model=model,
            chunk_size=chunk_size,
            max_in_flight=max_in_flight,
            progress=progress,
        )
        return await job.run()

    async def stream_transcribe(
        self,
        audio: bytes | None = None,
        *,
        model: str,
        audio_url: str | None = None,
        language: str | None = None,
        provider: str | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> AsyncGenerator[TranscribeEvent, None]:
        """Yield transcript segments as they are decoded, then the TranscribeResult."""
        head, timeout = self._head(request_id, timeout_s)
        request = TranscribeRequest(
            **head,
            model=model,
            audio=audio,
            audio_url=audio_url,
            language=language,
            provider=provider,
        )
        async for item in self._call("transcribe", request, timeout):
            if isinstance(item, TranscriptSegment | StreamRestarted | TranscribeResult):
                yield item

    async def transcribe(
        self, audio: bytes | None = None, *, model: str, **options: Any
    ) -> TranscribeResult:
        stream = self.stream_transcribe(audio, model=model, **options)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, TranscribeResult):
                    return item
        raise AssertionError("a reply stream ends with its final chunk or an exception")

    async def upsert(
        self,
        collection: str,
        records: Sequence[VectorRecord],
        *,
        embed_model: str | None = None,
        store: str | None = None,
        timeout_s: float | None = None,
    ) -> VectorResult:
        """Insert or replace records; records with `text` and no `vector` are embedded first."""
        head, timeout = self._head(None, timeout_s)
        request = VectorUpsertRequest(
            **head,
            collection=collection,
            records=list(records),
            embed_model=embed_model,
            store=store,
        )
        return await self._final("vectors", request, timeout, VectorResult)

    async def delete(
        self,
        collection: str,
        ids: Sequence[str],
        *,
        store: str | None = None,
        timeout_s: float | None = None,
    ) -> VectorResult:
        head, timeout = self._head(None, timeout_s)
        request = VectorDeleteRequest(**head, collection=collection, ids=list(ids), store=store)
        return await self._final("vectors", request, timeout, VectorResult)

    async def query(
        self,
        collection: str,
        *,
        vector: Sequence[float] | None = None,
        text: str | None = None,
        top_k: int = 10,
        filter: Metadata | None = None,
        embed_model: str | None = None,
        store: str | None = None,
        timeout_s: float | None = None,
    ) -> VectorResult:
        """The top_k closest records to a vector or to a text (embedded by the worker)."""
        head, timeout = self._head(None, timeout_s)
        request = VectorQueryRequest(
            **head,
            collection=collection,
            vector=list(vector) if vector is not None else None,
            text=text,
            top_k=top_k,
            filter=filter,
            embed_model=embed_model,
            store=store,
        )
        return await self._final("vectors", request, timeout, VectorResult)

    def _head(self, request_id: str | None, timeout_s: float | None) -> tuple[_Head, float]:
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        head: _Head = {
            "request_id": request_id or uuid.uuid4().hex,
            "tenant": self.tenant,
            "reply_to": self.reply_address,
            "deadline_ms": int((time.time() + timeout) * 1000),
        }
        return head, timeout

    async def _final(
        self, kind: str, request: AnyRequest, timeout_s: float, expected: type[F]
    ) -> F:
        stream = self._call(kind, request, timeout_s)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, expected):
                    return item
        raise AssertionError("a reply stream ends with its final chunk or an exception")

    async def _call(
        self, kind: str, request: AnyRequest, timeout_s: float
    ) -> AsyncGenerator[ReplyChunk | StreamRestarted, None]:
        router = self.router
        inbox = router.open(request.request_id)
        answered = sent = False
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout_s
        try:
            await self._send(kind, request)
            sent = True
            while True:
                # Chunks often arrive together: take those already here without a timer.
                item = inbox.get_nowait()
                if item is None:
                    try:
                        # One timer and no extra task per wait (wait_for made both).
                        async with asyncio.timeout_at(loop.time() + deadline - time.monotonic()):
                            item = await inbox.get()
                    except TimeoutError:
                        raise DeadlineExceeded(
                            f"{kind} request {request.request_id} got no complete answer "
                            f"within {timeout_s:g}s"
                        ) from None
                if isinstance(item, ErrorReply):
                    answered = True
                    raise FleetRequestError(item)
                answered = isinstance(item, Final)
                yield item
                if answered:
                    return
        finally:
            router.close(inbox)
            if sent and not answered:  # the caller stopped waiting (cancelled, deadline, left)
                await self._cancel(kind, request)

    async def _send(self, kind: str, request: AnyRequest) -> None:
        if self._producer is None:
            raise NotConnected("use the client inside `async with FleetClient(...)`")
        topic = request_topic(kind, self.namespace)
        headers = inject_headers(
            [
                (Header.CONTENT_TYPE, self.content_type.encode()),
                (Header.REQUEST_ID, request.request_id.encode()),
            ]
        )
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

    async def _cancel(self, kind: str, request: AnyRequest) -> None:
        """Ask the workers to stop (or never start) a job nobody waits for any more.

        Best effort: a cancel that is lost costs only the work it would have saved.
        """
        if self._producer is None:
            return
        message = CancelJob(
            request_id=request.request_id,
            tenant=request.tenant,
            submission=submission_of(request),
        )
        try:
            await asyncio.wait_for(
                self._producer.send(
                    control_topic(kind, self.namespace),
                    encode(message),
                    key=request.request_id.encode(),
                ),
                timeout=2.0,
            )
        except (KafkaError, TimeoutError, RuntimeError) as exc:
            log.debug("could not send the cancel of %s: %r", request.request_id, exc)

    async def _create_reply_topic(self) -> None:
        await ensure_topics(
            self.bootstrap_servers,
            {self.reply_address.topic: 1},
            configs={"retention.ms": str(_REPLY_RETENTION_MS)},
        )

    async def _delete_reply_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        try:
            await admin.start()
            await admin.delete_topics([self.reply_address.topic])
        except KafkaError:
            pass  # retention removes what an unreachable broker kept
        finally:
            await admin.close()

    async def _heartbeat(self) -> None:
        """Mark the reply topic alive, so `fleet janitor` never takes a live client's topic."""
        assert self._producer is not None
        while True:
            try:
                await self._producer.send(
                    self.reply_address.topic, b"", partition=0, headers=[(Header.HEARTBEAT, b"")]
                )
            except KafkaError as exc:
                log.warning("heartbeat to %s failed: %r", self.reply_address.topic, exc)
            await asyncio.sleep(CLIENT_HEARTBEAT_S)

    async def _shutdown(self) -> None:
        for task in (self._heartbeat_task, self._router_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._heartbeat_task = self._router_task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self._router = None
        await self._delete_reply_topic()
