"""What a request costs a lane's fair queue (contracts/job_cost.py), per kind."""

from __future__ import annotations

from contracts import ChatMessage, EmbedRequest, GenerateRequest, SpeechRequest
from contracts.job_cost import AUDIO_URL_SECONDS, DEFAULT_MAX_TOKENS, job_cost
from contracts.rerank import RerankRequest
from contracts.tokens import estimate_prompt_tokens, estimate_tokens
from contracts.transcribe import TranscribeRequest
from contracts.vectors import VectorDeleteRequest
from contracts.wav import wav_header


def test_a_chat_costs_its_prompt_and_its_max_tokens() -> None:
    messages = [ChatMessage(role="user", content="x" * 400)]
    request = GenerateRequest(request_id="r", model="m", messages=messages, max_tokens=100)
    assert job_cost(request) == estimate_prompt_tokens(messages, None) + 100
    unbounded = GenerateRequest(request_id="r", model="m", messages=messages)
    assert job_cost(unbounded) == estimate_prompt_tokens(messages, None) + DEFAULT_MAX_TOKENS


def test_embed_and_rerank_cost_their_tokens() -> None:
    texts = ["a" * 40, "b" * 400]
    assert job_cost(EmbedRequest(request_id="r", model="m", texts=texts)) == sum(
        estimate_tokens(t) for t in texts
    )
    rerank = RerankRequest(request_id="r", model="m", query="q" * 8, documents=["d" * 80] * 3)
    assert job_cost(rerank) == 3 * (estimate_tokens("q" * 8) + estimate_tokens("d" * 80))


def test_transcribe_costs_seconds_of_audio_and_speech_its_characters() -> None:
    # Three seconds of 16 kHz 16-bit mono: 32,000 bytes a second.
    wav = wav_header(16_000, data_bytes=96_000) + bytes(96_000)
    assert job_cost(TranscribeRequest(request_id="r", model="m", audio=wav)) == 4  # rounded up
    mp3 = bytes(16_000 * 10)
    assert job_cost(TranscribeRequest(request_id="r", model="m", audio=mp3)) == 10
    by_url = TranscribeRequest(request_id="r", model="m", audio_url="https://x.test/a.mp3")
    assert job_cost(by_url) == AUDIO_URL_SECONDS
    speech = SpeechRequest(request_id="r", model="m", input="Hello there", voice="v")
    assert job_cost(speech) == len("Hello there")


def test_a_request_without_a_size_costs_one() -> None:
    assert job_cost(VectorDeleteRequest(request_id="r", collection="c", ids=["1"])) == 1
