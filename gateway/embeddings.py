"""``POST /v1/embeddings``: OpenAI's embeddings call as a fleet embed job, its vectors as
numbers or as base64 of little-endian float32 (OpenAI's own base64 layout); ``dimensions``
goes to the worker, which shortens the vectors or refuses."""

from __future__ import annotations

import base64
import struct
from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import decoded_body, from_fleet
from gateway.overhead import awaiting_fleet
from producer_sdk import FleetClient
from producer_sdk.batch.openai_output_lines import embeddings_body


class EmbeddingsCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model: str
    # Token arrays are not taken: the fleet's embed jobs carry text.
    input: str | Annotated[list[str], msgspec.Meta(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None


def read_embeddings_call(raw: bytes) -> EmbeddingsCall:
    return decoded_body(raw, EmbeddingsCall)


async def embed(
    request: Request, client: FleetClient, call: EmbeddingsCall, request_id: str
) -> Response:
    answer = client.embed(
        call.input, model=call.model, dimensions=call.dimensions, request_id=request_id
    )
    result = await from_fleet(awaiting_fleet(request, answer))
    vectors: list[list[float]] | list[str]
    if call.encoding_format == "base64":
        # The rows' float32 block as it came, or packed here when the worker sent numbers.
        block = result.vectors_float32 or b"".join(
            struct.pack(f"<{len(v)}f", *v) for v in result.vectors
        )
        size = 4 * result.dimension
        vectors = [
            base64.b64encode(block[i : i + size]).decode() for i in range(0, len(block), size)
        ]
    else:
        vectors = result.vectors
    body = embeddings_body(vectors, result.model, result.usage.prompt_tokens)
    return Response(msgspec.json.encode(body), media_type="application/json")
