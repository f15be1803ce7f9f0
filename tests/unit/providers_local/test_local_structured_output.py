"""Structured output on the real SmolLM2: response_format becomes a GBNF grammar that
llama.cpp's sampler holds every token to, and the generate handler checks each answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest

from contracts import (
    ChatMessage,
    ErrorCode,
    GenerateRequest,
    GenerateResult,
    JsonSchemaSpec,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
)
from providers.chat import ChatParams, ChatProvider, TextPiece, chat_providers
from providers.chat.local_llama import SMOLLM2_MODEL
from providers.errors import ProviderError
from providers.router import ModelRouter
from workers.handlers.generate import GenerateHandler
from workers.handlers.reply_stream import ChunkStamper

pytestmark = [pytest.mark.model]

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
AS_PERSON = ResponseFormatJsonSchema(
    json_schema=JsonSchemaSpec(name="person", schema=PERSON, strict=True)
)
WHO = ["a pirate", "a nurse", "a farmer", "a chef", "a pilot"]
WHY = ["for a story", "for a game"]


@pytest.fixture(scope="module")
async def chat() -> AsyncIterator[ChatProvider]:
    provider = chat_providers.create("local-llama", {"n_ctx": 512, "n_threads": 2})
    await provider.load()
    yield provider
    await provider.aclose()


async def _answer(handler: GenerateHandler, request: GenerateRequest) -> GenerateResult:
    chunks = [c async for c in handler.handle(request, ChunkStamper(request.request_id, 0))]
    final = chunks[-1]
    assert isinstance(final, GenerateResult)
    return final


async def _text(chat: ChatProvider, messages: list[ChatMessage], params: ChatParams) -> str:
    events = [event async for event in chat.stream_chat(messages, params)]
    return "".join(e.text for e in events if isinstance(e, TextPiece))


async def test_twenty_sampled_answers_all_parse_and_match_the_schema(chat: ChatProvider) -> None:
    handler = GenerateHandler(ModelRouter("chat", [chat]))
    answers: list[str] = []
    for n in range(20):
        prompt = f"Invent {WHO[n % len(WHO)]} {WHY[n % len(WHY)]}: a name and an age."
        request = GenerateRequest(
            request_id=f"person-{n}",
            model=SMOLLM2_MODEL,
            messages=[ChatMessage(role="user", content=prompt)],
            response_format=AS_PERSON,
            max_tokens=64,
            temperature=0.8,  # sampled, not greedy: twenty different answers
            seed=n,
        )
        result = await _answer(handler, request)  # the handler's own check passed
        answer = json.loads(result.text)  # and an independent parse and validation
        jsonschema.validate(answer, PERSON)
        assert result.finish_reason == "stop"
        answers.append(result.text)
        print(f"{n:2d} {result.usage.completion_tokens:2d} tokens: {result.text}")
    assert len(set(answers)) > 10


async def test_json_object_gives_an_object_where_free_text_would_not(chat: ChatProvider) -> None:
    ask = [ChatMessage(role="user", content="Name three colours of the rainbow.")]
    plain = ChatParams(model=SMOLLM2_MODEL, max_tokens=48, temperature=0)
    shaped = ChatParams(
        model=SMOLLM2_MODEL,
        max_tokens=48,
        temperature=0,
        response_format=ResponseFormatJsonObject(),
    )
    free = await _text(chat, ask, plain)
    text = await _text(chat, ask, shaped)
    with pytest.raises(json.JSONDecodeError):
        json.loads(free)
    assert isinstance(json.loads(text), dict)


async def test_a_schema_the_converter_cannot_express_is_refused_before_decoding(
    chat: ChatProvider,
) -> None:
    odd = ResponseFormatJsonSchema(json_schema=JsonSchemaSpec(name="odd", schema={"type": "odd"}))
    params = ChatParams(model=SMOLLM2_MODEL, max_tokens=8, response_format=odd)
    with pytest.raises(ProviderError) as info:
        async for _ in chat.stream_chat([ChatMessage(role="user", content="hi")], params):
            pass
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "cannot be turned into a grammar" in info.value.detail
