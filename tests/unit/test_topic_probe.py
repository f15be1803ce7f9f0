"""How a worker asks the broker about a reply topic before replying there: the producer's
own metadata first, one shared fetch for the jobs of a new client, and a topic called
missing only when two views, a moment apart, both lack it."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from aiokafka import AIOKafkaProducer

from transport import publisher
from transport.publisher import broker_topic_probe

OWN = "ns.v1.generate.requests"


class _View:
    def __init__(self, topics: dict[str, int]) -> None:
        self._topics = topics

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self._topics.get(topic)
        return set(range(count)) if count else None


class _Client:
    def __init__(self, views: list[dict[str, int]]) -> None:
        self.cluster = _View({})  # what the producer itself has seen: nothing yet
        self._views = views
        self.fetches = 0

    async def fetch_all_metadata(self) -> _View:
        view = self._views[min(self.fetches, len(self._views) - 1)]
        self.fetches += 1
        await asyncio.sleep(0)
        return _View(view)


def _producer(*views: dict[str, int]) -> tuple[AIOKafkaProducer, _Client]:
    client = _Client(list(views))

    class _Producer:
        pass

    fake = _Producer()
    fake.client = client  # type: ignore[attr-defined]
    return cast(AIOKafkaProducer, fake), client


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher, "_PROBE_CONFIRM_S", 0.0)


async def test_the_jobs_of_a_new_client_share_one_fetch() -> None:
    producer, client = _producer({OWN: 4, "ns.v1.replies.c1": 1})
    probe = broker_topic_probe(producer, OWN)
    answers = await asyncio.gather(*(probe("ns.v1.replies.c1") for _ in range(20)))
    assert answers == [1] * 20
    assert client.fetches == 1


async def test_a_topic_is_missing_only_when_a_later_view_lacks_it_too() -> None:
    # A view from before the client created its topic is not the last word on it.
    producer, client = _producer({OWN: 4}, {OWN: 4}, {OWN: 4, "ns.v1.replies.new": 2})
    probe = broker_topic_probe(producer, OWN)
    assert await probe("ns.v1.replies.other") == 0  # fetches 1 and 2: neither has "other"
    assert await probe("ns.v1.replies.new") == 2  # the cached view 2 lacks it: fetch 3
    assert client.fetches == 3
    producer, client = _producer({OWN: 4})
    assert await broker_topic_probe(producer, OWN)("ns.v1.replies.gone") == 0
    assert client.fetches == 2  # a view fetched for the question, and one a moment later


async def test_a_view_without_the_workers_own_topic_says_nothing() -> None:
    producer, _ = _producer({})  # a broker that has just started and knows no topic yet
    assert await broker_topic_probe(producer, OWN)("ns.v1.replies.c1") is None
