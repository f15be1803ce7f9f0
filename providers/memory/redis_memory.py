"""Conversation memory in Redis, namespaced by tenant and session, windowed, with a TTL.

One Redis list per session at ``{prefix}:{tenant}:{session}``; tenant and session ids are
restricted by the contract to ``[A-Za-z0-9_.-]``, so one tenant's key can never name
another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

import msgspec

from contracts.generate import ChatMessage
from contracts.secrets import Secret
from contracts.tokens import estimate_message_tokens
from providers.redis_client import RedisClient
from providers.registry import parse_config
from providers.shared import Shared

# KEYS: the session's list, the turn's record. ARGV: max messages, ttl s, the messages.
# The turn's earlier messages (from a run of the same job that did not finish) are removed
# from the list's end first, so each turn is kept once.
_APPEND_TURN: Final = """
local earlier = redis.call('LRANGE', KEYS[2], 0, -1)
for i = #earlier, 1, -1 do redis.call('LREM', KEYS[1], -1, earlier[i]) end
redis.call('DEL', KEYS[2])
for i = 3, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  redis.call('RPUSH', KEYS[2], ARGV[i])
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(ChatMessage)


class RedisMemoryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # None: the worker's own Redis (settings.redis_url). A Secret: it may hold a password.
    url: Secret | None = None
    key_prefix: str = "fleet:memory"
    # The window: at most this many messages are kept, and of those, loading returns the
    # newest that fit max_tokens (estimated), so a long history never overflows the context.
    max_messages: Annotated[int, msgspec.Meta(ge=1)] = 40
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = 2048
    ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 7 * 24 * 3600


class RedisMemory:
    name = "redis"

    def __init__(self, config: RedisMemoryConfig, client: RedisClient) -> None:
        self._config = config
        self._redis = client
        self._append_turn = self._redis.register_script(_APPEND_TURN)

    def key(self, tenant: str, session_id: str) -> str:
        """One session's history. The braces are a Redis Cluster hash tag: the history and
        its turn markers (``<key>:turn:<id>``), which one script writes together, share a
        slot."""
        return f"{self._config.key_prefix}:{{{tenant}:{session_id}}}"

    async def history(self, tenant: str, session_id: str) -> list[ChatMessage]:
        raw: list[bytes] = await self._redis.lrange(self.key(tenant, session_id), 0, -1)  # type: ignore[assignment]
        messages = [_decoder.decode(item) for item in raw]
        if self._config.max_tokens is not None:
            messages = _newest_within(messages, self._config.max_tokens)
        return _without_orphan_results(messages)

    async def append(
        self,
        tenant: str,
        session_id: str,
        messages: list[ChatMessage],
        *,
        turn_id: str | None = None,
    ) -> None:
        if not messages:
            return
        key = self.key(tenant, session_id)
        encoded = [_encoder.encode(m) for m in messages]
        if turn_id is not None:
            turn_key = f"{key}:turn:{turn_id}"
            await self._append_turn(
                keys=[key, turn_key], args=[self._config.max_messages, self._config.ttl_s, *encoded]
            )
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *encoded)
            pipe.ltrim(key, -self._config.max_messages, -1)
            pipe.expire(key, self._config.ttl_s)
            await pipe.execute()

    async def clear(self, tenant: str, session_id: str) -> None:
        await self._redis.delete(self.key(tenant, session_id))

    async def aclose(self) -> None:
        """Nothing of its own to close: the client belongs to the process's pool."""


def _newest_within(messages: list[ChatMessage], budget: int) -> list[ChatMessage]:
    """The newest messages whose estimated tokens fit ``budget``."""
    kept: list[ChatMessage] = []
    for message in reversed(messages):
        budget -= estimate_message_tokens(message)
        if budget < 0:
            break
        kept.append(message)
    return kept[::-1]


def _without_orphan_results(messages: list[ChatMessage]) -> list[ChatMessage]:
    """The window may begin after an assistant turn that called tools and before that
    turn's tool results: results without their call are refused by every API, so they go."""
    start = 0
    while start < len(messages) and messages[start].role == "tool":
        start += 1
    return messages[start:]


def create(config: Mapping[str, Any], shared: Shared) -> RedisMemory:
    parsed = parse_config("redis", config, RedisMemoryConfig)
    return RedisMemory(parsed, shared.redis_client("redis", parsed.url))
