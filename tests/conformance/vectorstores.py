"""The behaviour every vector store must show; each store's test module subclasses this class.

Subclasses provide the ``store`` fixture (a connected store) and may loosen
``score_tolerance`` where the store keeps quantised vectors.
"""

from __future__ import annotations

import abc
import math
import uuid
from collections.abc import AsyncIterator, Callable
from typing import ClassVar, Protocol

import pytest

from contracts.errors import ErrorCode
from contracts.vectors import Metadata
from providers.errors import ProviderError
from providers.vectorstores import VectorItem, VectorStore

DIM = 8


class DroppableStore(VectorStore, Protocol):
    async def drop_collection(self, collection: str) -> bool: ...


def unit(*components: float) -> list[float]:
    vector = list(components) + [0.0] * (DIM - len(components))
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


QUERY = unit(1.0)
# Expected cosine to QUERY, best first; "opposite" checks that scores are cosine (-1),
# not a distance or a [0, 1] similarity.
RANKED = {
    "exact": (unit(1.0), 1.0),
    "near": (unit(1.0, 0.3), 1.0 / math.sqrt(1.09)),
    "mid": (unit(1.0, 1.0), 1.0 / math.sqrt(2.0)),
    "far": (unit(0.0, 1.0), 0.0),
    "opposite": (unit(-1.0), -1.0),
}


class VectorStoreConformance(abc.ABC):
    score_tolerance: ClassVar[float] = 1e-4

    @abc.abstractmethod
    @pytest.fixture
    async def store(self) -> AsyncIterator[DroppableStore]:
        """A connected store, closed after the test."""
        raise NotImplementedError
        yield  # pragma: no cover  (makes this an async generator like the overrides)

    @pytest.fixture
    async def new_collection(self, store: DroppableStore) -> AsyncIterator[Callable[[], str]]:
        """Makes fresh collection names; every one is dropped after the test."""
        names: list[str] = []

        def make() -> str:
            names.append(f"t_{uuid.uuid4().hex}")
            return names[-1]

        yield make
        for name in names:
            await store.drop_collection(name)

    @pytest.fixture
    def collection(self, new_collection: Callable[[], str]) -> str:
        return new_collection()

    @pytest.fixture
    async def ranked(self, store: DroppableStore, collection: str) -> str:
        items = [VectorItem(id=id_, vector=vector) for id_, (vector, _) in RANKED.items()]
        assert await store.upsert(collection, items) == len(RANKED)
        return collection

    async def test_top_k_in_order_with_cosine_scores(
        self, store: DroppableStore, ranked: str
    ) -> None:
        matches = await store.query(ranked, QUERY, top_k=len(RANKED))
        assert [m.id for m in matches] == list(RANKED)
        for match in matches:
            assert match.score == pytest.approx(RANKED[match.id][1], abs=self.score_tolerance)

    async def test_top_k_limits_the_answer(self, store: DroppableStore, ranked: str) -> None:
        matches = await store.query(ranked, QUERY, top_k=2)
        assert [m.id for m in matches] == ["exact", "near"]
        assert len(await store.query(ranked, QUERY, top_k=100)) == len(RANKED)

    async def test_upsert_replaces_vector_and_metadata(
        self, store: DroppableStore, ranked: str
    ) -> None:
        moved = VectorItem(id="exact", vector=unit(0.0, 0.0, 1.0), metadata={"v": 2})
        assert await store.upsert(ranked, [moved]) == 1
        matches = await store.query(ranked, unit(0.0, 0.0, 1.0), top_k=len(RANKED) + 1)
        assert len(matches) == len(RANKED)  # replaced, not added
        assert matches[0].id == "exact"
        assert matches[0].metadata == {"v": 2}
        assert matches[0].score == pytest.approx(1.0, abs=self.score_tolerance)

    async def test_replacing_with_empty_metadata_clears_it(
        self, store: DroppableStore, collection: str
    ) -> None:
        await store.upsert(collection, [VectorItem(id="a", vector=QUERY, metadata={"k": "v"})])
        await store.upsert(collection, [VectorItem(id="a", vector=QUERY)])
        [match] = await store.query(collection, QUERY, top_k=1)
        assert match.metadata == {}
        assert await store.query(collection, QUERY, top_k=1, filter={"k": "v"}) == []

    async def test_delete_counts_only_existing_ids(
        self, store: DroppableStore, ranked: str
    ) -> None:
        assert await store.delete(ranked, ["exact", "no-such-id"]) == 1
        matches = await store.query(ranked, QUERY, top_k=10)
        assert [m.id for m in matches] == ["near", "mid", "far", "opposite"]
        assert await store.delete(ranked, ["exact"]) == 0

    async def test_delete_in_unknown_collection_is_zero(
        self, store: DroppableStore, collection: str
    ) -> None:
        assert await store.delete(collection, ["a"]) == 0

    async def test_metadata_filter_is_equality_on_all_keys(
        self, store: DroppableStore, collection: str
    ) -> None:
        items = [
            VectorItem(id="en1", vector=unit(1.0), metadata={"lang": "en", "n": 1}),
            VectorItem(id="en2", vector=unit(1.0, 0.5), metadata={"lang": "en", "n": 2}),
            VectorItem(id="de1", vector=unit(1.0, 0.1), metadata={"lang": "de", "n": 1}),
            VectorItem(id="bare", vector=unit(1.0, 0.2)),
        ]
        await store.upsert(collection, items)
        by_lang = await store.query(collection, QUERY, top_k=10, filter={"lang": "en"})
        assert [m.id for m in by_lang] == ["en1", "en2"]
        both = await store.query(collection, QUERY, top_k=10, filter={"lang": "en", "n": 2})
        assert [m.id for m in both] == ["en2"]
        assert await store.query(collection, QUERY, top_k=10, filter={"lang": "fr"}) == []
        assert await store.query(collection, QUERY, top_k=10, filter={"other": "x"}) == []

    async def test_filter_on_bool_float_and_quoted_string(
        self, store: DroppableStore, collection: str
    ) -> None:
        title = 'say "hi"'
        items = [
            VectorItem(id="a", vector=unit(1.0), metadata={"ok": True, "w": 0.25, "t": title}),
            VectorItem(id="b", vector=unit(1.0, 0.2), metadata={"ok": False, "w": 0.5, "t": "x"}),
        ]
        await store.upsert(collection, items)
        filters: list[Metadata] = [{"ok": True}, {"w": 0.25}, {"t": title}]
        for filter in filters:
            matches = await store.query(collection, QUERY, top_k=10, filter=filter)
            assert [m.id for m in matches] == ["a"], filter
        matches = await store.query(collection, QUERY, top_k=10, filter={"ok": False})
        assert [m.id for m in matches] == ["b"]

    async def test_selective_filter_still_fills_top_k(
        self, store: DroppableStore, collection: str
    ) -> None:
        # 300 items, 5 of them in group "rare" and all far from the query: an index that
        # filters after a fixed-size candidate scan would return fewer than 5.
        items = [
            VectorItem(
                id=f"i{n}",
                vector=unit(1.0, n / 300, (n % 7) / 7),
                metadata={"group": "rare" if n % 60 == 59 else "common"},
            )
            for n in range(300)
        ]
        await store.upsert(collection, items)
        matches = await store.query(collection, QUERY, top_k=5, filter={"group": "rare"})
        assert sorted(m.id for m in matches) == sorted(f"i{n}" for n in range(59, 300, 60))

    async def test_metadata_round_trips_with_types(
        self, store: DroppableStore, collection: str
    ) -> None:
        metadata: Metadata = {
            "s": "héllo 日本",
            "i": 42,
            "f": 1.5,
            "b": True,
        }
        await store.upsert(
            collection, [VectorItem(id="ünïcode id", vector=QUERY, metadata=metadata)]
        )
        [match] = await store.query(collection, QUERY, top_k=1)
        assert match.id == "ünïcode id"
        assert match.metadata == metadata
        assert {k: type(v) for k, v in match.metadata.items()} == {
            "s": str,
            "i": int,
            "f": float,
            "b": bool,
        }

    async def test_collections_are_separate(
        self, store: DroppableStore, new_collection: Callable[[], str]
    ) -> None:
        first, second = new_collection(), new_collection()
        await store.upsert(first, [VectorItem(id="a", vector=QUERY)])
        await store.upsert(second, [VectorItem(id="b", vector=QUERY)])
        assert [m.id for m in await store.query(first, QUERY, top_k=10)] == ["a"]
        assert [m.id for m in await store.query(second, QUERY, top_k=10)] == ["b"]

    async def test_unknown_collection_is_not_found(
        self, store: DroppableStore, collection: str
    ) -> None:
        with pytest.raises(ProviderError) as caught:
            await store.query(collection, QUERY, top_k=3)
        assert caught.value.code is ErrorCode.NOT_FOUND
        assert not caught.value.retryable

    async def test_dimension_mismatch_is_invalid_input(
        self, store: DroppableStore, ranked: str
    ) -> None:
        with pytest.raises(ProviderError) as on_query:
            await store.query(ranked, [1.0, 0.0, 0.0], top_k=3)
        assert on_query.value.code is ErrorCode.INVALID_INPUT
        with pytest.raises(ProviderError) as on_upsert:
            await store.upsert(ranked, [VectorItem(id="x", vector=[1.0, 0.0, 0.0])])
        assert on_upsert.value.code is ErrorCode.INVALID_INPUT
        # Nothing was written by the refused upsert.
        assert len(await store.query(ranked, QUERY, top_k=100)) == len(RANKED)

    async def test_mixed_dimensions_in_one_upsert_are_invalid(
        self, store: DroppableStore, collection: str
    ) -> None:
        items = [VectorItem(id="a", vector=QUERY), VectorItem(id="b", vector=[1.0, 0.0])]
        with pytest.raises(ProviderError) as caught:
            await store.upsert(collection, items)
        assert caught.value.code is ErrorCode.INVALID_INPUT

    async def test_empty_upsert_and_delete_are_noops(
        self, store: DroppableStore, collection: str
    ) -> None:
        assert await store.upsert(collection, []) == 0
        assert await store.delete(collection, []) == 0

    async def test_drop_collection(self, store: DroppableStore, ranked: str) -> None:
        assert await store.drop_collection(ranked)
        assert not await store.drop_collection(ranked)
        with pytest.raises(ProviderError) as caught:
            await store.query(ranked, QUERY, top_k=1)
        assert caught.value.code is ErrorCode.NOT_FOUND

    async def test_health(self, store: DroppableStore) -> None:
        assert await store.health()
