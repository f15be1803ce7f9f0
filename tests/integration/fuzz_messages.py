"""Hostile and broken messages for the fuzz test: seeded mutations of requests as the SDK
builds them (bytes flipped, cut or spliced; fields dropped, retyped or made huge; depth
bombs; reply addresses the fleet must refuse; bad headers), reproducible from the seed."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import msgspec

from contracts import ContentType, Header

Headers = list[tuple[str, bytes]]
Message = tuple[bytes, Headers]

_WEIRD_VALUES: list[Any] = [
    None, True, 0, -1, 2**31, 2**63 - 1, 1.5, "", "x" * 5000, "ü🎉\u0000", [], [1, "a"], {},
    {"nested": {"deeper": [None]}},
]  # fmt: skip
_BAD_TOPICS = ["", " ", "a" * 300, "no spaces allowed", "../etc", "ns.v1.replies.", "payments"]


_BOMB = "__depth_bomb__"  # stands in for nested arrays until the message is encoded


def _explode(value: bytes, as_json: bool, depth: int) -> bytes:
    """The placeholder replaced by arrays nested ``depth`` deep (no encoder nests so deep)."""
    if as_json:
        return value.replace(f'"{_BOMB}"'.encode(), b"[" * depth + b"]" * depth)
    return value.replace(msgspec.msgpack.encode(_BOMB), b"\x91" * depth + b"\x90")


class Mutator:
    """``mutate(request, i)``: message ``i`` of a seeded series built from one request
    (as a plain dict, as the SDK would send it)."""

    def __init__(self, seed: int, namespace: str) -> None:
        self._rng = random.Random(seed)
        self._namespace = namespace
        self._depth = 0
        self._field_mutations: list[Callable[[dict[str, Any]], None]] = [
            self._drop_field,
            self._retype_field,
            self._unknown_field,
            self._bad_reply_address,
            self._gone_reply_topic,
            self._deep_field,
            self._huge_numbers,
            self._long_lists,
        ]

    def mutate(self, request: dict[str, Any], i: int) -> Message:
        rng = self._rng
        body = json.loads(json.dumps(request))
        body["request_id"] = f"fz-{i}"
        self._depth = 0
        for _ in range(rng.randint(1, 3)):
            rng.choice(self._field_mutations)(body)
        as_json = rng.random() < 0.4
        try:
            value = json.dumps(body).encode() if as_json else msgspec.msgpack.encode(body)
        except (OverflowError, ValueError, TypeError):  # a value msgpack cannot hold
            value = json.dumps(body).encode()
            as_json = True
        if self._depth:
            value = _explode(value, as_json, self._depth)
        if rng.random() < 0.3:
            value = self._bytes(value)
        return value, self._headers(as_json)

    def _bytes(self, value: bytes) -> bytes:
        rng = self._rng
        data = bytearray(value)
        choice = rng.randrange(5)
        if choice == 0 and data:  # flip a few bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice == 1:  # cut
            del data[rng.randrange(len(data) + 1) :]
        elif choice == 2:  # splice in garbage (0xc1 is never valid msgpack)
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes([0xC1]) + rng.randbytes(rng.randint(0, 32))
        elif choice == 3:  # repeat a region
            at = rng.randrange(len(data) + 1)
            data[at:at] = data[: rng.randint(0, len(data))]
        else:  # only garbage
            data = bytearray(rng.randbytes(rng.randint(0, 200)))
        return bytes(data)

    def _headers(self, as_json: bool) -> Headers:
        rng = self._rng
        content_type = ContentType.JSON if as_json else ContentType.MSGPACK
        headers: Headers = [(Header.CONTENT_TYPE, content_type.encode())]
        roll = rng.random()
        if roll < 0.05:
            headers = [(Header.CONTENT_TYPE, rng.randbytes(8))]
        elif roll < 0.10:
            headers.append((Header.RETRY_COUNT, rng.choice([b"x", b"-3", b"1e3", b"\xff"])))
        elif roll < 0.15:
            headers.append((Header.RETRY_ATTEMPT, rng.choice([b"", b"99999999999999999999"])))
        elif roll < 0.20:
            headers = []
        return headers

    def _field(self, body: dict[str, Any]) -> str:
        return self._rng.choice(sorted(body))

    def _drop_field(self, body: dict[str, Any]) -> None:
        body.pop(self._field(body), None)

    def _retype_field(self, body: dict[str, Any]) -> None:
        body[self._field(body)] = self._rng.choice(_WEIRD_VALUES)

    def _unknown_field(self, body: dict[str, Any]) -> None:
        body[f"unknown_{self._rng.randrange(100)}"] = self._rng.choice(_WEIRD_VALUES)

    def _bad_reply_address(self, body: dict[str, Any]) -> None:
        rng = self._rng
        current = body.get("reply_to")
        address = dict(current) if isinstance(current, dict) else {"topic": "t", "partition": 0}
        if rng.random() < 0.5:
            address["partition"] = rng.choice([-1, 1, 99, 2**40, "0", None])
        else:
            address["topic"] = rng.choice(_BAD_TOPICS)
        body["reply_to"] = address

    def _gone_reply_topic(self, body: dict[str, Any]) -> None:
        """A well-formed address in the fleet's reply family that no client owns."""
        suffix = self._rng.randrange(10)
        body["reply_to"] = {"topic": f"{self._namespace}.v1.replies.gone-{suffix}", "partition": 0}

    def _deep_field(self, body: dict[str, Any]) -> None:
        body[self._field(body)] = _BOMB
        self._depth = self._rng.choice([50, 2_000, 5_000])

    def _huge_numbers(self, body: dict[str, Any]) -> None:
        key = self._rng.choice(["deadline_ms", "attempt", "schema_version", "max_tokens"])
        body[key] = self._rng.choice([-(2**63), 2**63 - 1, 2**64, 10**30, -5, 0])

    def _long_lists(self, body: dict[str, Any]) -> None:
        for key in ("messages", "texts"):
            if isinstance(body.get(key), list) and body[key]:
                body[key] = body[key] * self._rng.choice([0, 2, 40])
