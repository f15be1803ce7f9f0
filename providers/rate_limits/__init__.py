"""Rate limits shared by every worker replica through Redis: the limiter itself, and chat,
embedding, rerank and transcription providers wrapped behind it."""

from providers.rate_limits.limiter import RateLimit, RedisRateLimiter
from providers.rate_limits.wrapped import (
    RateLimitedChat,
    RateLimitedEmbeddings,
    RateLimitedRerank,
    RateLimitedTranscription,
)

__all__ = [
    "RateLimit",
    "RateLimitedChat",
    "RateLimitedEmbeddings",
    "RateLimitedRerank",
    "RateLimitedTranscription",
    "RedisRateLimiter",
]
