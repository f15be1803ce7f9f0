"""The job runner driven without a broker: an in-memory publisher takes the replies, dead
letters and retries; shared by the runner's test modules."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.structs import ConsumerRecord

from contracts import (
    ChatMessage,
    GenerateRequest,
    Header,
)
from contracts.codec import encode
from contracts.envelope import ReplyAddress
from contracts.replies import ReplyChunk
from contracts.signing import sign
from providers.call_retry import CallRetryPolicy
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.router import ModelRouter
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.memory_publisher import MemoryPublisher
from transport.publisher import TopicProbe
from transport.records import Record
from workers.budgets import Budgets
from workers.dead_letter import DeadLetters
from workers.handlers.generate import GenerateHandler
from workers.idempotency import JobLedger
from workers.metrics import Outcome, WorkerMetrics
from workers.retry import RedeliveryScheduler, RetryPolicy
from workers.runtime.runner import JobRunner, TurnSettings

NAMESPACE = "unit"


REQUESTS = "unit.v1.generate.requests"


DEAD = "unit.v1.generate.dead-letter"


REPLIES = "unit.v1.replies.caller"


MODEL = "scripted-model"


# Redis that stays away fails a claim in milliseconds here, not after the real ~15 s.
FAST_LEDGER_RETRY = CallRetryPolicy(max_attempts=2, base_delay_s=0.01)


class Fixture:
    def __init__(
        self,
        chat: ScriptedChat | None = None,
        ledger: JobLedger | None = None,
        ledger_retry: CallRetryPolicy = FAST_LEDGER_RETRY,
        topic_probe: TopicProbe | None = None,
        tenant_keys: dict[str, bytes] | None = None,
        reply_topic_allowed: Callable[[str], bool] | None = None,
        handler: GenerateHandler | None = None,
        publisher: MemoryPublisher | None = None,
        turns: TurnSettings | None = None,
        budgets: Budgets | None = None,
        models: ModelCatalogue = NO_MODELS,
    ) -> None:
        self.chat = chat or ScriptedChat()
        self.publisher = publisher or MemoryPublisher()
        self.metrics = WorkerMetrics("generate")
        self.runner = JobRunner(
            kind="generate",
            handler=handler or GenerateHandler(ModelRouter("chat", [self.chat]), models=models),
            producer=self.publisher,
            dead_letters=DeadLetters(self.publisher, DEAD, self.metrics),
            max_payload_bytes=100_000,
            metrics=self.metrics,
            ledger=ledger,
            retries=RedeliveryScheduler(
                self.publisher, "generate", NAMESPACE, RetryPolicy(max_retries=2)
            ),
            ledger_retry=ledger_retry,
            topic_probe=topic_probe,
            tenant_keys=tenant_keys,
            reply_topic_allowed=reply_topic_allowed,
            turns=turns,
            budgets=budgets,
            models=models,
        )

    def count(self, outcome: Outcome) -> float:
        value = self.metrics.registry.get_sample_value(
            "fleet_jobs_total", {"kind": "generate", "outcome": outcome.value}
        )
        return value or 0.0

    def dead_letters(self) -> list[tuple[str, str]]:
        return [
            (s.headers[Header.DLQ_REASON].decode(), s.headers[Header.DLQ_DETAIL].decode())
            for s in self.publisher.on(DEAD)
        ]


def _request(request_id: str = "job-1", **fields: object) -> GenerateRequest:
    return GenerateRequest(
        request_id=request_id,
        model=MODEL,
        messages=[ChatMessage(role="user", content="hi")],
        reply_to=ReplyAddress(topic=REPLIES, partition=0),
        **fields,  # type: ignore[arg-type]
    )


def _record(value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Record:
    return ConsumerRecord(REQUESTS, 0, 7, 0, 0, b"key", value, None, 3, len(value), headers or [])


def _final(chunks: list[ReplyChunk]) -> ReplyChunk:
    assert chunks, "no reply was sent"
    return chunks[-1]


class _Raising(ScriptedChat):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def stream_chat(self, messages, params):  # type: ignore[no-untyped-def]
        raise self.error
        yield  # a generator, like the real ones


def _probe(partitions: int | None) -> TopicProbe:
    """What the broker says of every topic: its partition count (0: it does not exist)."""

    async def probe(topic: str) -> int | None:
        return partitions

    return probe


KEYS = {"acme": b"acme-secret-key", "globex": b"globex-secret-key"}


def _signed(request: GenerateRequest, key: bytes | None) -> Record:
    value = encode(request)
    headers = [] if key is None else [(Header.TENANT_SIGNATURE, sign(key, value))]
    return _record(value, headers)
