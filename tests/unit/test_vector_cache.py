"""VectorCache: the bounded LRU of vectors a bi-encoder keeps between requests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from providers.embeddings.vector_cache import ENTRY_BYTES, VectorCache
from providers.telemetry import Attr, Metric, vector_cache_lookups


class Counted:
    """A cache of ``entries`` vectors whose lookups count on a meter of the test's own."""

    def __init__(self, entries: int) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        counter = vector_cache_lookups(self.meter_provider.get_meter("test"))
        self.cache = VectorCache(entries * ENTRY_BYTES, provider="test-provider", counter=counter)

    def lookups(self) -> dict[str, int]:
        """The counter's value by result: {"hit": n, "miss": m}."""
        counted: dict[str, int] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == Metric.VECTOR_CACHE_LOOKUPS:
                        for point in metric.data.data_points:
                            assert isinstance(point, NumberDataPoint)
                            attributes = dict(point.attributes or {})
                            assert attributes[Attr.PROVIDER_NAME] == "test-provider"
                            counted[str(attributes[Attr.CACHE_RESULT])] = int(point.value)
        return counted


@pytest.fixture
def counted() -> Iterator[Counted]:
    made = Counted(entries=3)
    yield made
    made.meter_provider.shutdown()


def vectors(*values: float) -> np.ndarray:
    return np.array([[value] * 384 for value in values], dtype=np.float32)


def test_keys_tell_models_and_token_ids_apart() -> None:
    key = VectorCache.key("m", [101, 7, 102])
    assert key == VectorCache.key("m", (101, 7, 102))
    assert key != VectorCache.key("other", [101, 7, 102])
    assert key != VectorCache.key("m", [101, 7, 8, 102])
    assert len(key) == 16


def test_kept_vectors_come_back_and_lookups_are_counted(counted: Counted) -> None:
    cache = counted.cache
    a, b, c = (VectorCache.key("m", [n]) for n in (1, 2, 3))
    assert cache.get_many([a, b]) == [None, None]
    rows = vectors(0.1, 0.2)
    cache.put_many([a, b], rows)
    rows[:] = 9.0  # the cache holds copies, not views of the caller's array
    found = cache.get_many([b, c, a])
    assert found[1] is None
    assert found[0] is not None
    assert found[2] is not None
    assert np.array_equal(found[0], vectors(0.2)[0])
    assert np.array_equal(found[2], vectors(0.1)[0])
    assert counted.lookups() == {"hit": 2, "miss": 3}


def test_the_least_recently_used_vector_goes_first(counted: Counted) -> None:
    cache = counted.cache
    a, b, c, d = (VectorCache.key("m", [n]) for n in (1, 2, 3, 4))
    cache.put_many([a, b, c], vectors(1, 2, 3))
    cache.get_many([a])  # a is now more recent than b
    cache.put_many([d], vectors(4))
    assert len(cache) == cache.capacity == 3
    assert [vector is not None for vector in cache.get_many([a, b, c, d])] == [
        True,
        False,
        True,
        True,
    ]


def test_capacity_follows_the_size_in_bytes() -> None:
    assert VectorCache(32 * 2**20, provider="p").capacity == 16_384
