"""Vectors kept between calls, by what was embedded: a bounded in-process LRU.

Retrieval pipelines rerank hits from the same corpus again and again; a bi-encoder that
keeps each document's vector embeds only the documents it has not seen. The key is a hash
of the model and the token ids the model read (after truncation), so a document cut to
another length is another entry, and one that the cut leaves whole is the same one. Why in
process and not in Redis: docs/decisions/0047-rerank-document-vectors-in-process.md.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
from opentelemetry.metrics import Counter

from providers.telemetry import Attr, vector_cache_lookups

# What one entry holds, counted generously: a 384-float vector (1,536 bytes), its ndarray
# header (112), a 16-byte digest as bytes (49) and the OrderedDict's link and slot (~150).
ENTRY_BYTES: Final = 2048


class VectorCache:
    """Unit vectors by ``key(model, ids)``, at most ``max_bytes // ENTRY_BYTES`` of them,
    the least recently used dropped first. Thread-safe: providers embed in worker threads."""

    def __init__(self, max_bytes: int, *, provider: str, counter: Counter | None = None) -> None:
        self.capacity = max_bytes // ENTRY_BYTES
        self._vectors: OrderedDict[bytes, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()
        self._lookups = counter or vector_cache_lookups()
        self._hit: Final = {Attr.PROVIDER_NAME: provider, Attr.CACHE_RESULT: "hit"}
        self._miss: Final = {Attr.PROVIDER_NAME: provider, Attr.CACHE_RESULT: "miss"}

    def __len__(self) -> int:
        return len(self._vectors)

    @staticmethod
    def key(model: str, ids: Sequence[int]) -> bytes:
        digest = hashlib.blake2b(model.encode(), digest_size=16)
        digest.update(b"\0")
        digest.update(np.asarray(ids, dtype=np.int32).tobytes())
        return digest.digest()

    def get_many(self, keys: Sequence[bytes]) -> list[npt.NDArray[np.float32] | None]:
        """The vector of each key, None where none is kept; the found ones become the most
        recently used."""
        with self._lock:
            found = [self._vectors.get(key) for key in keys]
            for key, vector in zip(keys, found, strict=True):
                if vector is not None:
                    self._vectors.move_to_end(key)
        hits = sum(vector is not None for vector in found)
        if hits:
            self._lookups.add(hits, self._hit)
        if hits < len(keys):
            self._lookups.add(len(keys) - hits, self._miss)
        return found

    def put_many(self, keys: Sequence[bytes], rows: npt.NDArray[np.float32]) -> None:
        """Keep ``rows[i]`` under ``keys[i]``, each copied so that it does not hold the whole
        run's array alive."""
        with self._lock:
            for key, row in zip(keys, rows, strict=True):
                self._vectors[key] = row.copy()
                self._vectors.move_to_end(key)
            while len(self._vectors) > self.capacity:
                self._vectors.popitem(last=False)
