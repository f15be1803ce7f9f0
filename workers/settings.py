"""Worker configuration: a msgspec Struct loaded from a TOML file and environment variables."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from contracts.errors import ConfigError
from contracts.gateway_limits import GatewayLimits
from contracts.names import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_NAMESPACE,
    Lane,
    reply_topic_prefix,
    shared_reply_topic_prefix,
)
from contracts.secrets import Secret, decode_secret
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.rate_limits.limiter import RateLimit
from transport.connection import (
    DEFAULT_BOOTSTRAP,
    PLAINTEXT,
    KafkaConnection,
    KafkaSecurity,
    security_from_env,
)
from transport.topology import BATCH_RETENTION_DAYS, TopicSettings, Topology
from workers.budgets import Budget
from workers.retry import RetryPolicy

DEFAULT_REDIS_URL = "redis://127.0.0.1:16379/0"


# The coordinator's settings: the ``[batch]`` table.
class BatchSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Requests of one batch in flight on the batch lane at once.
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 16
    # Batches one coordinator runs at once; more wait (on their partitions) for a free one.
    max_batches: Annotated[int, msgspec.Meta(ge=1)] = 8
    # An embed request of a batch holds at most this many rows and characters: large enough
    # that a request's own cost (ledger, reply) is small beside its model time, small enough
    # that its answer stays a few hundred kB (bench/batch_jobs.py measured 64 and 256).
    embed_chunk_rows: Annotated[int, msgspec.Meta(ge=1, le=2048)] = 256
    embed_chunk_chars: Annotated[int, msgspec.Meta(ge=1)] = 64_000
    # How long the coordinator waits for one request's answer (the fleet retries provider
    # failures itself before it answers with an error).
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 900.0
    # How often a running batch's request counts are published.
    status_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    # How long the broker keeps a batch's input and output topics (its results are
    # downloadable this long after it was submitted): transport/topology.py.
    retention_days: Annotated[float, msgspec.Meta(gt=0)] = BATCH_RETENTION_DAYS


# The OpenAI-compatible gateway's settings (`fleet gateway`): the ``[gateway]`` table.
class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000  # 0: any free port
    # Each tenant's bearer key (`Authorization: Bearer <key>`): usually "env:NAME" or
    # "file:PATH". A tenant without one cannot call the gateway. Its jobs are signed with
    # its key of `tenant_keys`, as the workers verify.
    api_keys: dict[str, Secret] = msgspec.field(default_factory=dict)
    # Back-pressure, body size and slow-client limits: the `[gateway.limits]` table.
    limits: GatewayLimits = msgspec.field(default_factory=GatewayLimits)
    # Requests and tokens per minute of a tenant's key, counted by every gateway replica
    # together through Redis (`[gateway.rate_limits.<tenant>]`); past it, 429. The tokens
    # are estimated at admission: the prompt, plus max_tokens (or the limits'
    # assumed_completion_tokens).
    rate_limits: dict[str, RateLimit] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if unknown := sorted(set(self.rate_limits) - set(self.api_keys)):
            raise ValueError(
                f"[gateway.rate_limits] names tenant {unknown[0]!r}, which has no key in "
                "[gateway] api_keys"
            )


class ProviderSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    # Requests and tokens per minute shared by every replica: chat, embeddings and rerank;
    # requests only for transcription. Refused on the memory and vector store entries
    # (_check_rate_limits).
    rate_limit: RateLimit | None = None
    # Longer than this in the limiter's queue and the job goes to a delayed retry instead.
    rate_limit_max_wait_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0

    def __repr__(self) -> str:
        # Provider configs hold API keys: a repr (logs, tracebacks) names the keys only.
        keys = ", ".join(sorted(self.config))
        return f"ProviderSpec(name={self.name!r}, config keys=[{keys}])"


class ReplyLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How big replies may be. An embed result larger than one message travels in parts."""

    # One reply message at most this big: under the broker's default message.max.bytes
    # (1 MiB) with room for the record's overhead.
    part_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 900_000
    # A whole result larger than this is refused with a typed error that names the limit.
    max_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024 * 1024


DEFAULT_REPLY_LIMITS = ReplyLimits()


class EmbedBatching(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Dynamic batching of the embed worker: texts from many requests share a model call."""

    max_texts: Annotated[int, msgspec.Meta(ge=1)] = 64
    # Estimated as characters / 4: close for English, and free to compute.
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 16_384
    max_wait_ms: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    # The batch lane's texts per model call while the interactive lane is busy (had a text
    # within interactive_busy_ms): a call cannot be interrupted, so this bounds how long an
    # interactive text waits behind batch work. MiniLM on 2 cores: 4 short texts take 8 ms
    # with 2 threads, 15 ms with 1, at about the rate of 8 texts a call (62% of 64 with 2
    # threads, the same as 64 with 1: bench/NOTES.md, case 8).
    batch_lane_max_texts: Annotated[int, msgspec.Meta(ge=1)] = 4
    interactive_busy_ms: Annotated[float, msgspec.Meta(ge=0)] = 1000.0


class RerankLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one rerank request may hold: the `[rerank_limits]` table. Larger ones are
    refused (invalid_input) before any model runs."""

    # Cohere's own recommendation; the handler splits them into calls of what the provider takes.
    max_documents: Annotated[int, msgspec.Meta(ge=1)] = 1000
    # About 4,000 tokens: far past what a reranker reads of a query (MiniLM: 256 tokens).
    max_query_chars: Annotated[int, msgspec.Meta(ge=1)] = 16_384


class CallerUrls(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a worker fetches for a caller (`audio_url`, `image_url`): the `[caller_urls]`
    table, read by workers/handlers/url_guard.py. Addresses inside the worker's network
    (private, loopback, link-local such as the metadata service, unique-local, multicast)
    are never fetched unless allowed_networks holds them."""

    # Hosts a URL may name ("example.com", or ".example.com" for every host under it);
    # empty: any host.
    hosts: list[str] = msgspec.field(default_factory=list)
    # Networks of the worker's own that may be fetched all the same ("10.20.0.0/16", or
    # "10.20.0.7" for one address): an internal audio store, say.
    allowed_networks: list[str] = msgspec.field(default_factory=list)
    # Image URLs naming these hosts go to the chat provider as they are, for it to fetch
    # from its own network; every other image is fetched by the worker and sent inline.
    provider_hosts: list[str] = msgspec.field(default_factory=list)
    # An image the worker fetches is at most this big (OpenAI's limit per image).
    max_image_bytes: Annotated[int, msgspec.Meta(ge=1)] = 20 * 1024 * 1024

    def __post_init__(self) -> None:
        self.networks()  # a range that is not one fails here, naming it

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        try:
            return [ipaddress.ip_network(n, strict=False) for n in self.allowed_networks]
        except ValueError as exc:
            raise ValueError(f"caller_urls.allowed_networks: {exc}") from exc


# Jobs in flight per worker process when not configured: a model that runs one call at a
# time needs few; the embed batcher needs many to fill its batches.
DEFAULT_CONCURRENCY = {
    "generate": 4, "embed": 64, "transcribe": 2, "vectors": 16, "rerank": 8, "speech": 2,
}  # fmt: skip
# Batch-lane jobs in flight at most (docs/decisions/0021-priority-lanes.md): enough to keep
# the model busy between batch jobs (embed: 8 chunks of 64 texts queue 512 texts).
DEFAULT_BATCH_CONCURRENCY = {
    "generate": 2, "embed": 8, "transcribe": 1, "vectors": 8, "rerank": 2, "speech": 1,
}  # fmt: skip


# A lane's fetch window beyond its slots, per slot, when `[fairness] window` is not set.
FAIRNESS_WINDOW_PER_SLOT = 4


class FairnessSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[fairness]` table: how a worker shares a full lane between tenants
    (workers/runtime/fair_queue.py, docs/decisions/0044-fair-queuing-in-a-lane.md)."""

    # Each tenant's weight: a busy tenant's share of a lane's cost follows it.
    weights: dict[str, Annotated[float, msgspec.Meta(gt=0)]] = msgspec.field(default_factory=dict)
    # The weight of a tenant not named in `weights`: equal shares by default.
    default_weight: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    # Records a lane fetches beyond its free slots, to choose among when its slots are full
    # (default: FAIRNESS_WINDOW_PER_SLOT per slot of the lane). 0: start in fetched order.
    window: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # Park a tenant's fetched records beyond its weighted share of a full window on the
    # kind's park topic, committed, for `park_delay_ms` before they go back to their lane,
    # so that the records behind a flood are fetched (decision 0045). False: they wait in
    # the log behind the flood.
    park: bool = True
    park_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 1000

    def window_for(self, slots: int) -> int:
        return self.window if self.window is not None else FAIRNESS_WINDOW_PER_SLOT * slots


EQUAL_SHARES = FairnessSettings()


def _spec(name: str) -> ProviderSpec:
    return ProviderSpec(name=name)


# One tenant's limits: the `[tenants.<tenant>]` table.
class TenantSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # The tenant's jobs running at once, of this kind, across every replica (Redis leases,
    # workers/tenant_leases.py); the rest wait their turn. None: no limit.
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # The same for each generate session (`session_id`) of the tenant.
    max_in_flight_per_session: Annotated[int, msgspec.Meta(ge=1)] | None = None


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    # TLS and SASL: the `[kafka]` table, or FLEET_SECURITY_PROTOCOL, FLEET_SASL_* and
    # FLEET_SSL_* variables (transport/connection.py).
    kafka: KafkaSecurity = PLAINTEXT
    redis_url: str = DEFAULT_REDIS_URL
    namespace: str = DEFAULT_NAMESPACE
    # Default group: "<namespace>.<kind>.workers"; every replica of a kind shares it.
    group_id: str | None = None
    concurrency: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # The batch lane's jobs in flight at most; they start only while the interactive lane
    # leaves a slot of `concurrency` free besides them (workers/runtime/lanes.py). 0: this
    # worker does not read the batch lane at all.
    batch_concurrency: Annotated[int, msgspec.Meta(ge=0)] | None = None
    partitions: Annotated[int, msgspec.Meta(ge=1)] = 4
    max_payload_bytes: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_PAYLOAD_BYTES
    replies: ReplyLimits = ReplyLimits()
    topics: TopicSettings = TopicSettings()
    # How long a stopping worker lets in-flight jobs finish before it hands them back.
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    commit_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 0.2
    max_poll_interval_ms: Annotated[int, msgspec.Meta(ge=1000)] = 300_000
    session_timeout_ms: Annotated[int, msgspec.Meta(ge=6000)] = 10_000
    # How long a produce (and the wait for a topic's metadata) may take: also how long a
    # reply to a client that went away holds a job before it is dead-lettered.
    kafka_request_timeout_ms: Annotated[int, msgspec.Meta(ge=1000)] = 15_000
    # Each tenant's signing key (contracts/signing.py). With any key configured, a request
    # runs only when its tenant's key signed it (verify_tenants = false turns that off).
    tenant_keys: dict[str, Secret] = msgspec.field(default_factory=dict)
    # Workers reply only to the namespace's reply topics (private ones,
    # "<namespace>.v1.replies.*", and shared ones, "<namespace>.v1.shared-replies.*") and to
    # the topics named here.
    reply_topics: list[str] = msgspec.field(default_factory=list)
    verify_tenants: bool | None = None
    # Once-only execution and crash takeover through Redis (workers/idempotency.py).
    idempotency: bool = True
    lock_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    # A job whose worker died while running it is retried at most this many times, then
    # dead-lettered as `worker_crashed` (needs the ledger: idempotency = true).
    max_crash_attempts: Annotated[int, msgspec.Meta(ge=0)] = 3
    result_ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 3600
    # Per tenant: the `[tenants.<tenant>]` tables. A tenant's leases last `lock_ttl_s`
    # unrenewed, as the ledger's locks do.
    tenants: dict[str, TenantSettings] = msgspec.field(default_factory=dict)
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    # Tenants' shares of a full lane: the `[fairness]` table.
    fairness: FairnessSettings = EQUAL_SHARES
    # Port of /healthz, /readyz and /metrics; 0 picks a free port, None serves nothing.
    health_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    chat: list[ProviderSpec] = msgspec.field(default_factory=lambda: [_spec("local-llama")])
    # Conversation memory of the generate worker; its Redis URL defaults to redis_url.
    memory: ProviderSpec | None = msgspec.field(default_factory=lambda: _spec("redis"))
    embeddings: list[ProviderSpec] = msgspec.field(default_factory=lambda: [_spec("local-minilm")])
    embed_batching: EmbedBatching = msgspec.field(default_factory=EmbedBatching)
    transcription: list[ProviderSpec] = msgspec.field(
        default_factory=lambda: [_spec("local-whisper")]
    )
    rerank: list[ProviderSpec] = msgspec.field(
        default_factory=lambda: [_spec("local-minilm-biencoder")]
    )
    rerank_limits: RerankLimits = msgspec.field(default_factory=RerankLimits)
    # Directories the transcribe worker may read `audio_url` paths from (none by default).
    audio_roots: list[str] = msgspec.field(default_factory=list)
    max_audio_bytes: Annotated[int, msgspec.Meta(ge=1)] = 25_000_000
    # Which http(s) `audio_url` and `image_url` the workers fetch: the `[caller_urls]` table.
    caller_urls: CallerUrls = msgspec.field(default_factory=CallerUrls)
    # The speech worker's voices (providers/speech): eSpeak NG by default (decision 0041).
    speech: list[ProviderSpec] = msgspec.field(default_factory=lambda: [_spec("local-espeak")])
    # The vector store; Redis vector sets default to redis_url.
    vector_store: ProviderSpec = msgspec.field(default_factory=lambda: _spec("redis"))
    # The model catalogue (`[[models]]`): per model, its context window, what it can do and
    # its prices (providers/catalogue.py, docs/decisions/0018-model-catalogue.md).
    models: list[ModelEntry] = msgspec.field(default_factory=list)
    # Threads each local model of this worker runs on (llama.cpp, ONNX Runtime,
    # CTranslate2) when its provider's config names none; None: every core. Several model
    # workers on one machine should each get their share: `fleet dev` and `fleet demo` set
    # it (FLEET_MODEL_THREADS) for the workers they start (decision 0029).
    model_threads: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # Spending limits per tenant (`[budgets.<tenant>]`, usd and period): a job reserves its
    # worst case at the catalogue's prices before it runs (workers/budgets.py). A hold
    # whose worker died stops counting after `budget_hold_s`.
    budgets: dict[str, Budget] = msgspec.field(default_factory=dict)
    budget_hold_s: Annotated[float, msgspec.Meta(gt=0)] = 900.0
    # The batch coordinator (`fleet worker batch`): the `[batch]` table.
    batch: BatchSettings = msgspec.field(default_factory=BatchSettings)
    # The HTTP gateway (`fleet gateway`): the `[gateway]` table.
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)

    def __post_init__(self) -> None:
        try:
            self.model_catalogue()
            _check_rate_limits(self)
        except ConfigError as exc:
            raise msgspec.ValidationError(str(exc)) from exc

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={_masked_url(value) if name == 'redis_url' else value!r}"
            for name, value in msgspec.structs.asdict(self).items()
        )
        return f"WorkerSettings({fields})"

    def model_catalogue(self) -> ModelCatalogue:
        return ModelCatalogue(self.models)

    @property
    def connection(self) -> KafkaConnection:
        """What every Kafka client of the worker is opened with."""
        return KafkaConnection(bootstrap_servers=self.bootstrap_servers, security=self.kafka)

    def producer_options(self) -> dict[str, Any]:
        """What every producer of the workers (and of the tools that write as they do) is
        opened with: every in-sync replica acknowledges each send, and no idempotence:
        aiokafka's idempotent sender dies for good on the OutOfOrderSequenceNumber a
        restarted broker can answer, and every later send then waits forever (decision
        0014). Order holds without it (one request in flight per partition); a retried
        duplicate is dropped by its sequence number."""
        return {
            **self.connection.options(),
            "linger_ms": 0,
            "acks": "all",
            "enable_idempotence": False,
            "request_timeout_ms": self.kafka_request_timeout_ms,
        }

    def reply_topic_allowed(self, topic: str) -> bool:
        """Whether workers may reply to ``topic``: the namespace's reply families, or named."""
        families = (reply_topic_prefix(self.namespace), shared_reply_topic_prefix(self.namespace))
        return topic.startswith(families) or topic in self.reply_topics

    def named_tenants(self) -> frozenset[str]:
        """The tenants the settings name (keys, limits, budgets, weights): each keeps a
        metric label of its own however many others come (workers/metrics.py)."""
        return frozenset({*self.tenant_keys, *self.tenants, *self.budgets, *self.fairness.weights})

    def tenant_verification(self) -> dict[str, bytes] | None:
        """The keys to verify tenants with, or None when tenants are taken as declared."""
        enabled = self.verify_tenants if self.verify_tenants is not None else bool(self.tenant_keys)
        if not enabled:
            return None
        return {tenant: key.reveal().encode() for tenant, key in self.tenant_keys.items()}

    @property
    def topology(self) -> Topology:
        """The topics these settings create and the consumer groups they join."""
        return Topology(
            namespace=self.namespace,
            partitions=self.partitions,
            families=self.topics,
            retry_tiers_s=self.retry.tiers_s,
            group_id=self.group_id,
            batch_retention_days=self.batch.retention_days,
        )

    def group_for(self, kind: str) -> str:
        return self.topology.group(kind)

    def concurrency_for(self, kind: str) -> int:
        return self.concurrency or DEFAULT_CONCURRENCY.get(kind, 4)

    def lane_group(self, kind: str, lane: Lane) -> str:
        """The consumer group of one lane of a kind: the kind's group for the interactive
        lane, "<group>.batch" for the batch lane."""
        return self.topology.lane_group(kind, lane)

    def batch_concurrency_for(self, kind: str) -> int:
        if self.batch_concurrency is not None:
            return self.batch_concurrency
        return DEFAULT_BATCH_CONCURRENCY.get(kind, 1)


def _check_rate_limits(settings: WorkerSettings) -> None:
    """Refuse a rate limit the worker would not honour, naming its entry: the memory and
    the vector store are the fleet's own stores, not metered APIs, and a transcription
    call's tokens are known only after it (its requests are limited)."""
    for field in ("memory", "vector_store"):
        spec: ProviderSpec | None = getattr(settings, field)
        if spec is not None and spec.rate_limit is not None:
            raise ConfigError(
                f"`{field}` ({spec.name!r}): rate_limit is honoured on chat, embeddings, "
                "rerank and transcription entries only; remove it here"
            )
    for i, spec in enumerate(settings.transcription):
        if spec.rate_limit is not None and spec.rate_limit.tokens_per_minute is not None:
            raise ConfigError(
                f"`transcription[{i}]` ({spec.name!r}): rate_limit.tokens_per_minute is not "
                "honoured for transcription (its tokens are known only after the call); "
                "limit it with requests_per_minute"
            )


def _masked_url(url: str) -> str:
    """A URL fit for logs: any password in it replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


_ENV = {
    "FLEET_BOOTSTRAP_SERVERS": "bootstrap_servers",
    "FLEET_REDIS_URL": "redis_url",
    "FLEET_NAMESPACE": "namespace",
}
# FLEET_* variables that hold a number.
_INT_ENV = {"FLEET_MODEL_THREADS": "model_threads"}


def load_settings(path: Path | None = None, **overrides: Any) -> WorkerSettings:
    """Settings from a TOML file (optional), then FLEET_* variables, then explicit overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = msgspec.toml.decode(path.read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {str(path)!r} does not exist") from exc
        except msgspec.DecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    for env, field in _ENV.items():
        if value := os.environ.get(env):
            raw[field] = value
    for env, field in _INT_ENV.items():
        if value := os.environ.get(env):
            try:
                raw[field] = int(value)
            except ValueError:
                raise ConfigError(f"{env}={value!r} is not a whole number") from None
    if security := security_from_env():
        raw["kafka"] = {**raw.get("kafka", {}), **security}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, WorkerSettings, dec_hook=decode_secret)
    except msgspec.ValidationError as exc:
        where = f" in {str(path)!r}" if path else ""
        raise ConfigError(f"invalid worker settings{where}: {exc}") from exc
