"""Topic names, header names and wire defaults, kept in one place."""

from __future__ import annotations

import enum
from typing import Final, Literal, get_args

from contracts.errors import ContractViolation

SCHEMA_VERSION: Final = 1
DEFAULT_NAMESPACE: Final = "fleet"
DEFAULT_TENANT: Final = "default"
# Kafka's own default max.message.bytes is about 1 MiB; a request above this is refused.
DEFAULT_MAX_PAYLOAD_BYTES: Final = 1_000_000
# A client marks its reply topic alive this often; `fleet janitor` deletes reply topics
# silent for much longer (their client died without closing).
CLIENT_HEARTBEAT_S: Final = 60.0

JOB_KINDS: Final = ("generate", "embed", "transcribe", "vectors", "rerank", "speech")

# The two lanes of every job kind (docs/decisions/0021-priority-lanes.md): users' requests
# travel on the interactive lane, a batch's chunks on the batch lane, and workers serve the
# batch lane only with what the interactive lane leaves.
Lane = Literal["interactive", "batch"]
LANES: Final[tuple[Lane, ...]] = get_args(Lane)


def request_topic(kind: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Topic that carries requests of one job kind, e.g. ``fleet.v1.generate.requests``."""
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}; expected one of {', '.join(JOB_KINDS)}")
    return f"{namespace}.v{SCHEMA_VERSION}.{kind}.requests"


def batch_request_topic(kind: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The batch lane of one job kind (``fleet.v1.embed.batch-requests``): the requests the
    batch coordinator sends. Workers serve it with what the interactive lane leaves
    (docs/decisions/0020-batch-jobs.md)."""
    return f"{request_topic(kind, namespace).removesuffix('.requests')}.batch-requests"


def lane_topic(kind: str, lane: Lane, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The request topic of one lane of one job kind."""
    if lane == "interactive":
        return request_topic(kind, namespace)
    if lane == "batch":
        return batch_request_topic(kind, namespace)
    raise ValueError(f"unknown lane {lane!r}; expected one of {', '.join(LANES)}")


def as_lane(value: str) -> Lane:
    """``value`` as a lane, or ValueError naming the lanes (for headers and options)."""
    for lane in LANES:
        if value == lane:
            return lane
    raise ValueError(f"unknown lane {value!r}; expected one of {', '.join(LANES)}")


# The batch coordinator is a worker kind of its own, beside the job kinds.
BATCH_KIND: Final = "batch"
# What `fleet worker` runs: a job kind's worker, or the batch coordinator.
WORKER_KINDS: Final = (*JOB_KINDS, BATCH_KIND)


def batch_topic_prefix(namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}.v{SCHEMA_VERSION}.{BATCH_KIND}."


def batch_command_topic(namespace: str = DEFAULT_NAMESPACE) -> str:
    """Submits, cancels and retries of batches, keyed by batch id (the coordinators' group)."""
    return f"{batch_topic_prefix(namespace)}commands"


def batch_status_topic(namespace: str = DEFAULT_NAMESPACE) -> str:
    """Every batch's BatchInfo, keyed by batch id, compacted: the last record is the status."""
    return f"{batch_topic_prefix(namespace)}status"


def batch_dead_letter_topic(namespace: str = DEFAULT_NAMESPACE) -> str:
    """Batch commands the coordinators refused (a tenant they could not verify)."""
    return f"{batch_topic_prefix(namespace)}dead-letter"


def batch_input_topic(batch_id: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """One batch's input rows, in pages (written by the submitting client)."""
    return f"{batch_topic_prefix(namespace)}{batch_id}.input"


def batch_output_topic(batch_id: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """One batch's row results (written by the coordinator)."""
    return f"{batch_topic_prefix(namespace)}{batch_id}.output"


def file_topic(file_id: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """One file uploaded through the gateway's ``/v1/files`` (contracts/files.py)."""
    return f"{file_topic_prefix(namespace)}{file_id}"


def file_topic_prefix(namespace: str = DEFAULT_NAMESPACE) -> str:
    """What every uploaded file's topic of the namespace starts with (its file id follows)."""
    return f"{namespace}.v{SCHEMA_VERSION}.file."


def dead_letter_topic(kind: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Topic where messages of one job kind go when they cannot be processed."""
    return f"{request_topic(kind, namespace).removesuffix('.requests')}.dead-letter"


def retry_topic(kind: str, delay_s: float, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Delayed-retry topic of one job kind; every message on it waits ``delay_s``."""
    return f"{request_topic(kind, namespace).removesuffix('.requests')}.retry-{delay_s:g}s"


def parked_topic(kind: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Where a worker parks a flooding tenant's excess records of one job kind, for a short
    fixed delay, before they go back to their lane (decision 0045)."""
    return f"{request_topic(kind, namespace).removesuffix('.requests')}.parked"


def control_topic(kind: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Topic every worker of one kind reads in full: cancellations of its jobs."""
    return f"{request_topic(kind, namespace).removesuffix('.requests')}.control"


def reply_topic(client_id: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Private reply topic of one producer instance."""
    return f"{reply_topic_prefix(namespace)}{client_id}"


def reply_topic_prefix(namespace: str = DEFAULT_NAMESPACE) -> str:
    """What every private reply topic of the namespace starts with."""
    return f"{namespace}.v{SCHEMA_VERSION}.replies."


def shared_reply_topic(service: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """A reply topic that the instances of one service share, created beforehand by whoever
    may create topics (docs/decisions/0016), e.g. ``fleet.v1.shared-replies.billing``."""
    return f"{shared_reply_topic_prefix(namespace)}{service}"


def shared_reply_topic_prefix(namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}.v{SCHEMA_VERSION}.shared-replies."


# Consumer groups. Every replica of a kind shares its kind's group (the batch coordinators
# too: the kind "batch"); KEDA scales each kind on its groups' lag (deploy/kubernetes/keda.yaml).
def worker_group(kind: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The consumer group of one kind's workers, e.g. ``fleet.embed.workers``."""
    return f"{namespace}.{kind}.workers"


def lane_group(group: str, lane: Lane) -> str:
    """The group that reads one lane: the kind's ``group`` itself for the interactive lane,
    ``<group>.batch`` for the batch lane."""
    return group if lane == "interactive" else f"{group}.batch"


def retry_group(group: str, delay_s: float) -> str:
    """The group of one retry tier's forwarders, e.g. ``fleet.embed.workers.retry-5s``."""
    return f"{group}.retry-{delay_s:g}s"


def parked_group(group: str) -> str:
    """The group of the forwarders that bring parked records back, e.g.
    ``fleet.embed.workers.parked``."""
    return f"{group}.parked"


def replay_group(kind: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The group that remembers a kind's replayed dead letters (``fleet dlq replay``)."""
    return f"{namespace}.{kind}.dlq-replay"


class Header:
    """Kafka header names used by the fleet, and the prefixes of the families."""

    DLQ_PREFIX: Final = "fleet-dlq-"
    RETRY_PREFIX: Final = "fleet-retry-"

    CONTENT_TYPE: Final = "content-type"
    REQUEST_ID: Final = "fleet-request-id"
    # The request's tenant and estimated cost (contracts/job_cost.py), stamped when it is
    # sent: what a worker's fair queue reads without decoding the request (decision 0044).
    TENANT: Final = "fleet-tenant"
    COST: Final = "fleet-cost"
    # HMAC of the message bytes with the tenant's key (contracts/signing.py).
    TENANT_SIGNATURE: Final = "fleet-tenant-signature"
    # Why a message was dead-lettered: a DeadLetterReason value; what happened, in words.
    DLQ_REASON: Final = "fleet-dlq-reason"
    DLQ_DETAIL: Final = "fleet-dlq-detail"
    DLQ_ERROR_CODE: Final = "fleet-dlq-error-code"
    DLQ_SOURCE_TOPIC: Final = "fleet-dlq-source-topic"
    DLQ_SOURCE_PARTITION: Final = "fleet-dlq-source-partition"
    DLQ_SOURCE_OFFSET: Final = "fleet-dlq-source-offset"
    # On a dead letter whose original did not fit beside the dead-letter headers (a message
    # near the broker's limit): the value is left out, and these say what it was.
    DLQ_ORIGINAL_BYTES: Final = "fleet-dlq-original-bytes"
    DLQ_ORIGINAL_SHA256: Final = "fleet-dlq-original-sha256"
    TRACEPARENT: Final = "traceparent"
    TRACESTATE: Final = "tracestate"
    # On an empty message a client writes to its own reply topic to say it is alive.
    HEARTBEAT: Final = "fleet-heartbeat"
    # On every reply to a request whose reply address names a client (`reply_to.client`):
    # that client id, so that clients sharing a reply topic keep only their own replies.
    REPLY_CLIENT: Final = "fleet-reply-client"
    RETRY_COUNT: Final = "fleet-retry-count"
    RETRY_NOT_BEFORE_MS: Final = "fleet-retry-not-before-ms"
    RETRY_REASON: Final = "fleet-retry-reason"
    # The attempt number the redelivered job runs as, at least: attempts keep rising even
    # without the ledger, or after Redis lost its counter.
    RETRY_ATTEMPT: Final = "fleet-retry-attempt"
    # The lane a parked job goes back to ("interactive" or "batch"; interactive when absent).
    RETRY_LANE: Final = "fleet-retry-lane"


class ContentType:
    MSGPACK: Final = "application/msgpack"
    JSON: Final = "application/json"


class DeadLetterReason(enum.StrEnum):
    """Why a message went to a dead-letter topic (header ``fleet-dlq-reason``)."""

    # The message does not satisfy the wire contract (ContractError.reason).
    OVERSIZED = "oversized"
    SCHEMA = "schema"
    UNDECODABLE = "undecodable"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_DEEP = "too_deep"
    BAD_HEADER = "bad_header"
    # The reply address is not one the fleet replies to (another family, a partition the
    # topic lacks): the job is not run and nothing is sent there.
    BAD_REPLY_ADDRESS = "bad_reply_address"
    # The job ran (or would have), but its replies could not reach the caller.
    REPLY_UNDELIVERABLE = "reply_undeliverable"
    REPLY_TOPIC_GONE = "reply_topic_gone"
    REPLY_TOO_LARGE = "reply_too_large"  # a result over the broker's message size
    # Its tenant could not be verified (no signature, a wrong one, or an unknown tenant).
    TENANT_UNVERIFIED = "tenant_unverified"
    # The job failed for good.
    LEDGER_UNAVAILABLE = "ledger_unavailable"  # Redis, which once-only execution needs, is down
    RETRIES_EXHAUSTED = "retries_exhausted"
    HANDLER_FAILED = "handler_failed"
    WORKER_CRASHED = "worker_crashed"

    @classmethod
    def of(cls, violation: ContractViolation) -> DeadLetterReason:
        """The reason a message that breaks the wire contract is dead-lettered with: each
        violation has the reason of its own name."""
        return cls(violation.value)
