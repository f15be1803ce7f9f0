"""Every topic the fleet creates, with its spec, and every consumer group: the one place
that asks the broker for topics (docs/decisions/0024-one-topology.md).

Two sides create topics: the workers, from their settings, and the SDK, which reads no
worker setting. So the topics the SDK creates have specs that no setting changes: constants
here, which the workers' side creates with too. Replication has one rule: a family's
``replication_factor`` where the settings give one, else the cluster's default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Annotated, Final

import msgspec
from aiokafka.errors import KafkaError

from contracts.errors import FleetError
from contracts.names import (
    DEFAULT_NAMESPACE,
    Lane,
    batch_command_topic,
    batch_dead_letter_topic,
    batch_input_topic,
    batch_output_topic,
    batch_request_topic,
    batch_status_topic,
    control_topic,
    dead_letter_topic,
    lane_group,
    parked_group,
    parked_topic,
    replay_group,
    request_topic,
    retry_group,
    retry_topic,
    worker_group,
)
from transport.connection import KafkaConnection
from transport.topic_admin import TopicSpec, ensure_topics, set_topic_configs

log = logging.getLogger(__name__)

_DAY_MS: Final = 86_400_000

# --- The topics the SDK creates: their specs depend on no setting. ---------------------

# A private reply topic: one partition, read by its one client; replies older than an hour
# are useless, so the topic keeps them no longer.
PRIVATE_REPLIES: Final = TopicSpec(partitions=1, configs={"retention.ms": str(3_600_000)})
# The batch command topic, created by whichever comes first, a submitting client or a
# coordinator: its partitions bound how many coordinators share the running batches.
BATCH_COMMANDS: Final = TopicSpec(partitions=4)
# The status topic keeps the last status of each batch. Compacted, in segments of an hour:
# a running batch writes its status every second, and only closed segments are compacted,
# so a week's default segment would have every status reader go through every update of
# the week.
BATCH_STATUS: Final = TopicSpec(
    partitions=1,
    configs={
        "cleanup.policy": "compact",
        "segment.ms": "3600000",
        "min.cleanable.dirty.ratio": "0.1",
    },
)
# How long a batch's input and output topics keep it, unless `[batch] retention_days` says
# otherwise (the coordinator then gives the input topic that retention when it takes the
# batch): its results are downloadable this long after it was submitted.
BATCH_RETENTION_DAYS: Final = 30.0


def batch_data(retention_days: float = BATCH_RETENTION_DAYS) -> TopicSpec:
    """A batch's input or output topic: one partition, read in order."""
    return TopicSpec(partitions=1, configs={"retention.ms": str(int(retention_days * _DAY_MS))})


# --- The workers' topic settings: the `[topics.*]` tables. -------------------------------


class TopicFamily(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the workers create one family of their topics (one that exists is left as it is).
    None everywhere: the cluster's defaults."""

    # Retry tiers and dead letters: one partition unless set (requests: ``partitions``).
    partitions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    replication_factor: Annotated[int, msgspec.Meta(ge=1)] | None = None
    min_insync_replicas: Annotated[int, msgspec.Meta(ge=1)] | None = None
    retention_ms: Annotated[int, msgspec.Meta(ge=-1)] | None = None  # -1: keep forever

    def spec(self, partitions: int) -> TopicSpec:
        """A topic of this family; ``partitions`` unless the family sets its own."""
        configs = {}
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return TopicSpec(
            partitions=self.partitions or partitions,
            replication_factor=self.replication_factor,
            configs=configs,
        )


class TopicSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[topics.requests]``, ``[topics.retry]``, ``[topics.dead_letter]``,
    ``[topics.control]`` in the TOML file."""

    requests: TopicFamily = TopicFamily()
    retry: TopicFamily = TopicFamily()
    dead_letter: TopicFamily = TopicFamily()
    control: TopicFamily = TopicFamily()

    def __post_init__(self) -> None:
        if self.requests.partitions is not None:
            raise msgspec.ValidationError(
                "`topics.requests.partitions`: the request topics' count is `partitions`"
            )
        if self.control.partitions not in (None, 1):
            raise msgspec.ValidationError(
                "`topics.control.partitions`: every worker reads the control topic's one partition"
            )


# --- The workers' side: topics and groups from their settings. ---------------------------


class Topology(msgspec.Struct, frozen=True, kw_only=True):
    """The topics the workers and coordinators create and the groups they join, from the
    settings (``WorkerSettings.topology``)."""

    namespace: str = DEFAULT_NAMESPACE
    # Of each request topic (both lanes).
    partitions: int = 4
    families: TopicSettings = TopicSettings()
    # The delays of the retry tiers, one topic (and forwarder group) each.
    retry_tiers_s: tuple[float, ...] = ()
    # One group for every kind instead of each kind's own (the `group_id` setting).
    group_id: str | None = None
    batch_retention_days: float = BATCH_RETENTION_DAYS

    def requests(self) -> TopicSpec:
        """A request topic of either lane."""
        return self.families.requests.spec(self.partitions)

    def kind_topics(self, kind: str) -> dict[str, TopicSpec]:
        """What a worker of ``kind`` creates: both lanes, its dead letters, control, retry
        tiers and the park topic (a deferred topic of the retry family)."""
        ns, families = self.namespace, self.families
        retry = families.retry.spec(1)
        return {
            request_topic(kind, ns): self.requests(),
            batch_request_topic(kind, ns): self.requests(),
            dead_letter_topic(kind, ns): families.dead_letter.spec(1),
            control_topic(kind, ns): families.control.spec(1),
            **{retry_topic(kind, delay, ns): retry for delay in self.retry_tiers_s},
            parked_topic(kind, ns): retry,
        }

    def coordinator_topics(self, sends_to: Iterable[str]) -> dict[str, TopicSpec]:
        """What a batch coordinator creates: the command and status topics, its dead
        letters, and the batch lanes of the kinds it ``sends_to`` (so that a batch waits in
        them for workers that have not started yet)."""
        ns = self.namespace
        return {
            batch_command_topic(ns): BATCH_COMMANDS,
            batch_status_topic(ns): BATCH_STATUS,
            batch_dead_letter_topic(ns): self.families.dead_letter.spec(1),
            **{batch_request_topic(kind, ns): self.requests() for kind in sends_to},
        }

    def batch_topics(self, batch_id: str) -> dict[str, TopicSpec]:
        """A batch's input and output topics, as its coordinator keeps them."""
        spec = batch_data(self.batch_retention_days)
        return {
            batch_input_topic(batch_id, self.namespace): spec,
            batch_output_topic(batch_id, self.namespace): spec,
        }

    def group(self, kind: str) -> str:
        """The group every replica of ``kind`` shares (the coordinators': ``BATCH_KIND``)."""
        return self.group_id or worker_group(kind, self.namespace)

    def lane_group(self, kind: str, lane: Lane) -> str:
        return lane_group(self.group(kind), lane)

    def retry_group(self, kind: str, delay_s: float) -> str:
        return retry_group(self.group(kind), delay_s)

    def parked_group(self, kind: str) -> str:
        return parked_group(self.group(kind))

    def deferred(self, kind: str) -> dict[str, tuple[str, str]]:
        """The topics whose forwarders bring records of ``kind`` back to their lane after a
        wait, by name (``retry-5s``, ``parked``): each one's topic and forwarders' group.
        The retry tiers' copies, and the park topic's (decision 0045)."""
        ns = self.namespace
        return {
            **{
                f"retry-{delay:g}s": (retry_topic(kind, delay, ns), self.retry_group(kind, delay))
                for delay in self.retry_tiers_s
            },
            "parked": (parked_topic(kind, ns), self.parked_group(kind)),
        }

    def replay_group(self, kind: str) -> str:
        return replay_group(kind, self.namespace)


# --- Creating them. ----------------------------------------------------------------------


async def create(connection: KafkaConnection, topics: Mapping[str, TopicSpec]) -> dict[str, int]:
    """Create the topics that do not exist yet, each with its spec from this module, and
    wait until the broker describes them all; the partitions each has. The fleet's one
    caller of ``ensure_topics`` (tests/unit/test_topology.py holds it to that)."""
    return await ensure_topics(connection, topics)


async def take_batch(connection: KafkaConnection, topology: Topology, batch_id: str) -> None:
    """What the coordinator that takes a batch does to its topics: creates the output topic,
    and gives the input topic (its client made it with ``BATCH_RETENTION_DAYS``) the same
    retention, so that both keep the batch as long as `[batch] retention_days` says."""
    topics = topology.batch_topics(batch_id)
    output = batch_output_topic(batch_id, topology.namespace)
    await create(connection, {output: topics[output]})
    if topology.batch_retention_days == BATCH_RETENTION_DAYS:
        return
    batch_input = batch_input_topic(batch_id, topology.namespace)
    try:
        await set_topic_configs(connection, batch_input, topics[batch_input].configs)
    except (KafkaError, FleetError) as exc:
        # A coordinator that may not alter topic configs (ACLs) still runs the batch: the
        # input then keeps the client's retention.
        log.warning(
            "batch %s: could not set the retention of %s to %g days, it keeps %g: %r",
            batch_id, batch_input, topology.batch_retention_days, BATCH_RETENTION_DAYS, exc,
        )  # fmt: skip
