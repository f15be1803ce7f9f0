"""Providers behind a shared rate limit, against the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from contracts import ChatMessage, ErrorCode
from providers.chat import ChatParams
from providers.errors import ProviderError
from providers.rate_limits.limiter import RateLimit
from providers.rate_limits.wrapped import RateLimitedChat, RateLimitedTranscription
from providers.redis_client import RedisClient
from providers.registry import parse_config
from providers.shared import Shared
from providers.transcription import TranscriptionDone, TranscriptionEvent
from providers.transcription.openai_compat import OpenAITranscription, OpenAITranscriptionConfig
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.providers import API_KEY, Replay
from tests.unit.providers.test_openai_transcription import WAV
from workers.handlers.providers import transcriber
from workers.settings import ProviderSpec

pytestmark = [pytest.mark.redis]

MESSAGES = [ChatMessage(role="user", content="hi")]
PARAMS = ChatParams(model="scripted-model")


def _chat(redis: RedisClient, limit: RateLimit, max_wait_s: float) -> RateLimitedChat:
    inner = ScriptedChat()
    inner.name = f"scripted-{uuid.uuid4().hex[:8]}"  # its own limit key per test
    return RateLimitedChat(inner, redis, limit, max_wait_s)


async def _call(chat: RateLimitedChat) -> None:
    async for _ in chat.stream_chat(MESSAGES, PARAMS):
        pass


async def test_calls_wait_for_room_in_the_shared_budget(redis: RedisClient) -> None:
    # One request per 0.5 s window: three calls cannot all finish in under one second.
    chat = _chat(redis, RateLimit(requests_per_minute=120, window_s=0.5), max_wait_s=10)
    started = time.monotonic()
    await asyncio.gather(_call(chat), _call(chat), _call(chat))
    elapsed = time.monotonic() - started
    await chat.aclose()
    assert elapsed >= 0.95


async def test_a_wait_beyond_the_limit_is_a_retryable_rate_limit_error(
    redis: RedisClient,
) -> None:
    chat = _chat(redis, RateLimit(requests_per_minute=1), max_wait_s=0.5)
    await _call(chat)
    with pytest.raises(ProviderError) as info:
        await _call(chat)
    await chat.aclose()
    assert info.value.code is ErrorCode.RATE_LIMIT
    assert info.value.retryable
    assert info.value.retry_after_s is not None
    assert info.value.retry_after_s > 0.5


async def test_transcription_calls_share_the_request_budget(redis: RedisClient) -> None:
    replay = Replay().json(200, "openai/transcription_verbose.json")
    config = parse_config(
        "openai", {"api_key": API_KEY, "models": ["whisper-1"]}, OpenAITranscriptionConfig
    )
    inner = OpenAITranscription(config, transport=replay.transport())
    inner.name = f"whisper-{uuid.uuid4().hex[:8]}"  # its own limit key
    stt = RateLimitedTranscription(inner, redis, RateLimit(requests_per_minute=1), 0.5)

    async def transcribe() -> list[TranscriptionEvent]:
        return [event async for event in stt.transcribe(WAV, model="whisper-1")]

    try:
        assert isinstance((await transcribe())[-1], TranscriptionDone)
        with pytest.raises(ProviderError) as info:
            await transcribe()
    finally:
        await stt.aclose()
    assert info.value.code is ErrorCode.RATE_LIMIT
    assert len(replay.requests) == 1, "the call over the budget never reached the API"


async def test_the_worker_wraps_a_transcription_entry_that_sets_a_rate_limit(
    shared: Shared,
) -> None:
    config = {"api_key": API_KEY, "models": ["whisper-1"]}
    limit = RateLimit(requests_per_minute=5)
    limited = transcriber(ProviderSpec(name="openai", config=config, rate_limit=limit), shared)
    plain = transcriber(ProviderSpec(name="openai", config=config), shared)
    await limited.aclose()
    await plain.aclose()
    assert isinstance(limited, RateLimitedTranscription)
    assert not isinstance(plain, RateLimitedTranscription)
