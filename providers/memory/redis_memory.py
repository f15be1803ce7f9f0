"""Conversation memory in Redis, namespaced by tenant and session, windowed, with a TTL.

One Redis list per session at ``{prefix}:{tenant}:{session}``; tenant and session ids are
restricted by the contract to ``[A-Za-z0-9_.-]``, so one tenant's key can never name
another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

import msgspec
import redis.asyncio as aioredis

from contracts.generate import ChatMessage
from providers.redis_client import connect_redis
from providers.registry import parse_config
from providers.secrets import Secret
from providers.tokens import estimate_tokens

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(ChatMessage)


class RedisMemoryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Secret = Secret("redis://127.0.0.1:16379/0")  # a Secret: it may hold a password
    key_prefix: str = "fleet:memory"
    # The window: at most this many messages are kept, and of those, loading returns the
    # newest that fit max_tokens (estimated), so a long history never overflows the context.
    max_messages: Annotated[int, msgspec.Meta(ge=1)] = 40
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = 2048
    ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 7 * 24 * 3600


class RedisMemory:
    name = "redis"

    def __init__(self, config: RedisMemoryConfig, client: aioredis.Redis | None = None) -> None:
        self._config = config
        self._redis = client or connect_redis(config.url.reveal())

    def key(self, tenant: str, session_id: str) -> str:
        return f"{self._config.key_prefix}:{tenant}:{session_id}"

    async def history(self, tenant: str, session_id: str) -> list[ChatMessage]:
        raw: list[bytes] = await self._redis.lrange(self.key(tenant, session_id), 0, -1)  # type: ignore[assignment]
        messages = [_decoder.decode(item) for item in raw]
        if self._config.max_tokens is None:
            return messages
        kept: list[ChatMessage] = []
        budget = self._config.max_tokens
        for message in reversed(messages):
            budget -= estimate_tokens(message.content)
            if budget < 0:
                break
            kept.append(message)
        return kept[::-1]

    async def append(self, tenant: str, session_id: str, messages: list[ChatMessage]) -> None:
        if not messages:
            return
        key = self.key(tenant, session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *[_encoder.encode(m) for m in messages])
            pipe.ltrim(key, -self._config.max_messages, -1)
            pipe.expire(key, self._config.ttl_s)
            await pipe.execute()

    async def clear(self, tenant: str, session_id: str) -> None:
        await self._redis.delete(self.key(tenant, session_id))

    async def aclose(self) -> None:
        await self._redis.aclose()


def create(config: Mapping[str, Any]) -> RedisMemory:
    return RedisMemory(parse_config("redis", config, RedisMemoryConfig))
