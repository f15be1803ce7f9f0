"""FleetClient: what a backend service uses to send jobs to the fleet and get answers back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from contracts.batch import BatchInfo
from contracts.codec import AnyRequest
from contracts.embed import EmbedRequest
from contracts.embed_parts import EmbedJoiner
from contracts.envelope import ReplyAddress
from contracts.generate import ChatMessage, GenerateRequest
from contracts.names import DEFAULT_NAMESPACE, DEFAULT_TENANT, ContentType, Lane
from contracts.names import reply_topic as private_reply_topic
from contracts.replies import (
    EmbedPart,
    EmbedResult,
    ErrorReply,
    Final,
    GenerateResult,
    ReplyChunk,
    RerankResult,
    SpeechAudio,
    SpeechResult,
    TextDelta,
    ToolCallDelta,
    TranscribeResult,
    TranscriptSegment,
    VectorResult,
)
from contracts.rerank import Document, RerankRequest
from contracts.speech import SpeechRequest
from contracts.transcribe import TranscribeRequest
from contracts.vectors import (
    Metadata,
    VectorDeleteRequest,
    VectorQueryRequest,
    VectorRecord,
    VectorUpsertRequest,
)
from producer_sdk.batches import BatchClient
from producer_sdk.channel import ClientChannel
from producer_sdk.errors import DeadlineExceeded, FleetRequestError, NotConnected
from producer_sdk.options import (
    GenerateEvent,
    GenerateOptions,
    RequestHead,
    SpeechEvent,
    SpeechOptions,
    TranscribeEvent,
    TranscribeOptions,
)
from producer_sdk.replies import ReplyRouter, StreamRestarted
from producer_sdk.speech import SpeechJoiner, SpokenAudio
from transport.connection import DEFAULT_BOOTSTRAP, PLAINTEXT, KafkaConnection, KafkaSecurity

F = TypeVar("F", bound=Final)


class FleetClient:
    """``async with FleetClient(bootstrap_servers) as fleet: ...``

    On entry the client creates its private reply topic and starts listening on it; on exit
    it deletes the topic. Where the cluster does not let clients create topics, the
    instances of a service share one made beforehand: ``reply_topic=shared_reply_topic(
    "billing")`` (each reads every partition and keeps its own replies), optionally with a
    ``reply_partition`` of its own to read only that one.

    A secured cluster: ``FleetClient(servers, security=KafkaSecurity(security_protocol=
    "SASL_SSL", ...))``, or ``FleetClient.from_env()``.
    """

    def __init__(
        self,
        bootstrap_servers: str = DEFAULT_BOOTSTRAP,
        *,
        security: KafkaSecurity = PLAINTEXT,
        namespace: str = DEFAULT_NAMESPACE,
        tenant: str = DEFAULT_TENANT,
        client_id: str | None = None,
        default_timeout_s: float = 120.0,
        content_type: str = ContentType.MSGPACK,
        tenant_key: str | bytes | None = None,
        reply_topic: str | None = None,
        reply_partition: int | None = None,
    ) -> None:
        self.connection = KafkaConnection(bootstrap_servers=bootstrap_servers, security=security)
        # Signs every request (contracts/signing.py): workers with tenant keys configured run
        # a request only for the tenant whose key signed it.
        self._tenant_key = tenant_key.encode() if isinstance(tenant_key, str) else tenant_key
        self.namespace = namespace
        self.tenant = tenant
        self.client_id = client_id or uuid.uuid4().hex
        # Default request ids: a random prefix of this client object and a counter, unique
        # like a uuid4 each (the prefix is), without a urandom call per request.
        self._id_prefix = uuid.uuid4().hex
        self._ids = itertools.count()
        self.default_timeout_s = default_timeout_s
        self.content_type = content_type
        if reply_topic is None:  # a private topic, created and deleted by this client
            if reply_partition is not None:
                raise ValueError("reply_partition needs a shared reply_topic")
            self.reply_address = ReplyAddress(
                topic=private_reply_topic(self.client_id, namespace), partition=0
            )
        else:  # shared with other clients, which tell their replies apart by client id
            self.reply_address = ReplyAddress(
                topic=reply_topic, partition=reply_partition, client=self.client_id
            )
        self._channel: ClientChannel | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> FleetClient:
        """A client for the cluster the ``FLEET_*`` variables describe: FLEET_BOOTSTRAP_SERVERS,
        FLEET_NAMESPACE and the security ones (``KafkaSecurity.from_env``). ``options`` are
        the constructor's other keyword arguments."""
        env = os.environ if environ is None else environ
        options.setdefault("namespace", env.get("FLEET_NAMESPACE") or DEFAULT_NAMESPACE)
        return cls(
            env.get("FLEET_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP,
            security=KafkaSecurity.from_env(env),
            **options,
        )

    async def __aenter__(self) -> Self:
        channel = ClientChannel(
            self.connection,
            self.namespace,
            self.reply_address,
            self.content_type,
            self._tenant_key,
        )
        await channel.open()
        self._channel = channel
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    @property
    def channel(self) -> ClientChannel:
        if self._channel is None:
            raise NotConnected("use the client inside `async with FleetClient(...)`")
        return self._channel

    @property
    def router(self) -> ReplyRouter:
        return self.channel.router

    async def stream_generate(
        self,
        messages: str | Sequence[ChatMessage],
        *,
        model: str,
        timeout_s: float | None = None,
        request_id: str | None = None,
        lane: Lane = "interactive",
        **options: Unpack[GenerateOptions],
    ) -> AsyncGenerator[GenerateEvent, None]:
        """Yield text and tool-call deltas as the model writes them, then the GenerateResult.

        A StreamRestarted event means the job was redone from the start: drop the text
        received so far. An error reply raises FleetRequestError. ``timeout_s``: the
        deadline, from now (default: the client's); ``request_id``: default a new unique id (the
        same id twice runs the model once, except on the batch lane, where answers are not
        kept for repeats); ``lane="batch"`` sends it on the batch lane, served with what
        interactive work leaves (docs/decisions/0021-priority-lanes.md).
        """
        head, timeout = self._head(request_id, timeout_s)
        request = _generate_request(head, messages, model, options, stream=True)
        async for item in self._call("generate", request, timeout, lane):
            if isinstance(item, TextDelta | ToolCallDelta | StreamRestarted | GenerateResult):
                yield item

    async def generate(
        self,
        messages: str | Sequence[ChatMessage],
        *,
        model: str,
        timeout_s: float | None = None,
        request_id: str | None = None,
        lane: Lane = "interactive",
        **options: Unpack[GenerateOptions],
    ) -> GenerateResult:
        """The complete answer of a generate request, sent as one reply (no deltas); the
        arguments as ``stream_generate``'s."""
        head, timeout = self._head(request_id, timeout_s)
        request = _generate_request(head, messages, model, options, stream=False)
        return await self._final("generate", request, timeout, GenerateResult, lane)

    async def embed(
        self,
        texts: str | Sequence[str],
        *,
        model: str,
        provider: str | None = None,
        custom_ids: Sequence[str] | None = None,
        dimensions: int | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
        lane: Lane = "interactive",
    ) -> EmbedResult:
        """Vectors for one text or a list of texts, in input order, as ``vectors`` (lists of
        floats) and as ``vectors_float32`` (one little-endian float32 block:
        ``numpy.frombuffer(r.vectors_float32, "<f4").reshape(-1, r.dimension)``).

        They travel as float32 bytes, and a result too large for one Kafka message comes in
        several parts; the caller gets them joined. ``dimensions`` shortens the vectors.
        ``lane="batch"`` sends it on the batch lane (served with what interactive work
        leaves; its answer is not kept, so a repeat of the request id runs again)."""
        head, timeout = self._head(request_id, timeout_s)
        request = EmbedRequest(
            **head,
            model=model,
            texts=[texts] if isinstance(texts, str) else list(texts),
            provider=provider,
            custom_ids=list(custom_ids) if custom_ids is not None else None,
            encoding_format="base64",
            dimensions=dimensions,
        )
        joiner = EmbedJoiner()
        stream = self._call("embed", request, timeout, lane)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, StreamRestarted):
                    joiner.restart()
                elif isinstance(item, EmbedPart):
                    joiner.add(item)
                elif isinstance(item, EmbedResult):
                    return joiner.join(item)
        raise AssertionError("a reply stream ends with its final chunk or an exception")

    async def rerank(
        self,
        query: str,
        documents: Sequence[Document],
        *,
        model: str,
        top_n: int | None = None,
        return_documents: bool = False,
        rank_fields: Sequence[str] | None = None,
        max_tokens_per_doc: int | None = None,
        provider: str | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
        lane: Lane = "interactive",
    ) -> RerankResult:
        """The documents ordered by relevance to ``query``, best first: each result's
        ``index`` is its place in ``documents``. Documents are strings, or objects whose
        ``rank_fields`` (default "text") are ranked; ``top_n`` keeps the best few."""
        head, timeout = self._head(request_id, timeout_s)
        request = RerankRequest(
            **head,
            model=model,
            query=query,
            documents=list(documents),
            rank_fields=list(rank_fields) if rank_fields is not None else None,
            top_n=top_n,
            return_documents=return_documents,
            max_tokens_per_doc=max_tokens_per_doc,
            provider=provider,
        )
        return await self._final("rerank", request, timeout, RerankResult, lane)

    async def submit_corpus(
        self,
        input_path: Path | str,
        output_path: Path | str,
        *,
        model: str,
        progress: Callable[[BatchInfo], None] | None = None,
    ) -> BatchInfo:
        """Embed a corpus file (``{"custom_id", "text"}`` per line, or any batch input the
        coordinator reads) into a results file of ``{"custom_id", "embedding"}`` lines, as
        a batch the fleet owns (``BatchClient.run_corpus``): the same call again after an
        interruption picks the batch up where the fleet has got to."""
        async with BatchClient(
            self.connection,
            namespace=self.namespace,
            tenant=self.tenant,
            tenant_key=self._tenant_key,
        ) as b:
            return await b.run_corpus(input_path, output_path, model=model, progress=progress)

    async def stream_transcribe(
        self,
        audio: bytes | None = None,
        *,
        model: str,
        **options: Unpack[TranscribeOptions],
    ) -> AsyncGenerator[TranscribeEvent, None]:
        """Yield transcript segments as they are decoded, then the TranscribeResult."""
        head, timeout = self._head(options.get("request_id"), options.get("timeout_s"))
        request = TranscribeRequest(
            **head,
            model=model,
            audio=audio,
            audio_url=options.get("audio_url"),
            language=options.get("language"),
            provider=options.get("provider"),
        )
        lane = options.get("lane", "interactive")
        async for item in self._call("transcribe", request, timeout, lane):
            if isinstance(item, TranscriptSegment | StreamRestarted | TranscribeResult):
                yield item

    async def transcribe(
        self, audio: bytes | None = None, *, model: str, **options: Unpack[TranscribeOptions]
    ) -> TranscribeResult:
        stream = self.stream_transcribe(audio, model=model, **options)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, TranscribeResult):
                    return item
        raise AssertionError("a reply stream ends with its final chunk or an exception")

    async def stream_speech(
        self, text: str, *, model: str, voice: str, **options: Unpack[SpeechOptions]
    ) -> AsyncGenerator[SpeechEvent, None]:
        """Yield the audio in pieces as the voice makes it (``SpeechAudio``: joined in
        order, the file in ``response_format``), then the SpeechResult with the usage. A
        StreamRestarted event means the job was redone: drop the audio received so far.
        A streamed wav's header gives no length (``speech`` returns the file with it)."""
        head, timeout = self._head(options.get("request_id"), options.get("timeout_s"))
        request = SpeechRequest(
            **head,
            model=model,
            input=text,
            voice=voice,
            response_format=options.get("response_format", "wav"),
            speed=options.get("speed", 1.0),
            instructions=options.get("instructions"),
            provider=options.get("provider"),
        )
        async for item in self._call(
            "speech", request, timeout, options.get("lane", "interactive")
        ):
            if isinstance(item, SpeechAudio | StreamRestarted | SpeechResult):
                yield item

    async def speech(
        self, text: str, *, model: str, voice: str, **options: Unpack[SpeechOptions]
    ) -> SpokenAudio:
        """The whole audio file of ``text`` spoken, and the result; the arguments as
        ``stream_speech``'s. Raises AudioIncomplete where the audio did not all arrive."""
        joiner = SpeechJoiner()
        stream = self.stream_speech(text, model=model, voice=voice, **options)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, StreamRestarted):
                    joiner.restart()
                elif isinstance(item, SpeechAudio):
                    joiner.add(item)
                else:
                    return joiner.join(item)
        raise AssertionError("a reply stream ends with its final chunk or an exception")

    async def upsert(
        self,
        collection: str,
        records: Sequence[VectorRecord],
        *,
        embed_model: str | None = None,
        store: str | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
        lane: Lane = "interactive",
    ) -> VectorResult:
        """Insert or replace records; records with `text` and no `vector` are embedded first.
        The same ``request_id`` again is answered from the ledger without writing twice."""
        head, timeout = self._head(request_id, timeout_s)
        request = VectorUpsertRequest(
            **head,
            collection=collection,
            records=list(records),
            embed_model=embed_model,
            store=store,
        )
        return await self._final("vectors", request, timeout, VectorResult, lane)

    async def delete(
        self,
        collection: str,
        ids: Sequence[str],
        *,
        store: str | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
        lane: Lane = "interactive",
    ) -> VectorResult:
        head, timeout = self._head(request_id, timeout_s)
        request = VectorDeleteRequest(**head, collection=collection, ids=list(ids), store=store)
        return await self._final("vectors", request, timeout, VectorResult, lane)

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
        request_id: str | None = None,
        lane: Lane = "interactive",
    ) -> VectorResult:
        """The top_k closest records to a vector or to a text (embedded by the worker)."""
        head, timeout = self._head(request_id, timeout_s)
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
        return await self._final("vectors", request, timeout, VectorResult, lane)

    def _head(self, request_id: str | None, timeout_s: float | None) -> tuple[RequestHead, float]:
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        head: RequestHead = {
            "request_id": request_id or f"{self._id_prefix}-{next(self._ids):x}",
            "tenant": self.tenant,
            "reply_to": self.reply_address,
            "deadline_ms": int((time.time() + timeout) * 1000),
        }
        return head, timeout

    async def _final(
        self,
        kind: str,
        request: AnyRequest,
        timeout_s: float,
        expected: type[F],
        lane: Lane = "interactive",
    ) -> F:
        stream = self._call(kind, request, timeout_s, lane)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, expected):
                    return item
        raise AssertionError("a reply stream ends with its final chunk or an exception")

    async def _call(
        self, kind: str, request: AnyRequest, timeout_s: float, lane: Lane = "interactive"
    ) -> AsyncGenerator[ReplyChunk | StreamRestarted, None]:
        channel = self.channel
        inbox = channel.router.open(request.request_id)
        answered = sent = False
        chunks, attempt = 0, None  # of the answer so far, for a deadline's message
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout_s
        try:
            await channel.send_request(kind, request, lane=lane, until=deadline)
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
                            kind, request.request_id, timeout_s, chunks=chunks, attempt=attempt
                        ) from None
                if isinstance(item, StreamRestarted):
                    chunks, attempt = 0, item.attempt
                else:
                    chunks, attempt = chunks + 1, item.attempt
                if isinstance(item, ErrorReply):
                    answered = True
                    raise FleetRequestError(item)
                answered = isinstance(item, Final)
                yield item
                if answered:
                    return
        finally:
            channel.router.close(inbox)
            if sent and not answered:  # the caller stopped waiting (cancelled, deadline, left)
                await channel.send_cancel(kind, request)


def _generate_request(
    head: RequestHead,
    messages: str | Sequence[ChatMessage],
    model: str,
    options: GenerateOptions,
    *,
    stream: bool,
) -> GenerateRequest:
    if isinstance(messages, str):
        messages = [ChatMessage(role="user", content=messages)]
    return GenerateRequest(**head, model=model, messages=list(messages), stream=stream, **options)
