"""``POST /v1/rerank``: a rerank call in Cohere's v2 and Jina's v1 shapes (vLLM's and TEI's
clients speak the latter) as a fleet rerank job. The answer is the results best first, each
with its ``index`` and ``relevance_score`` (and its ``document`` when asked for: a string
as ``{"text": ...}``, an object as it was sent), the model, and ``usage.total_tokens``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from contracts.rerank import RerankOptions
from contracts.tokens import estimate_rerank_tokens
from gateway.admission import admitted
from gateway.errors import decoded_body, from_fleet
from gateway.overhead import awaiting_fleet
from gateway.request_ids import request_id
from producer_sdk import FleetClient
from producer_sdk.batch.openai_output_lines import rerank_body

if TYPE_CHECKING:
    from gateway.app import GatewayState


class RerankCall(RerankOptions, frozen=True, kw_only=True):
    model: str


def read_rerank_call(raw: bytes) -> RerankCall:
    # The rank-field check names no path: the documents are at fault.
    return decoded_body(raw, RerankCall, unnamed_param="documents")


async def create_rerank(state: GatewayState, request: Request) -> Response:
    tenant = state.tenant(request)
    client = await state.client(tenant)
    call = read_rerank_call(await request.body())
    state.models.check(call.model, "rerank")
    texts = [d if isinstance(d, str) else " ".join(d.values()) for d in call.documents]
    ticket = await state.admit(tenant, estimate_rerank_tokens(call.query, texts))
    return await admitted(ticket, _rerank(request, client, call, request_id(request.scope)))


async def _rerank(
    request: Request, client: FleetClient, call: RerankCall, request_id: str
) -> Response:
    answer = client.rerank(
        call.query,
        call.documents,
        model=call.model,
        top_n=call.top_n,
        return_documents=call.return_documents,
        rank_fields=call.rank_fields,
        max_tokens_per_doc=call.max_tokens_per_doc,
        request_id=request_id,
    )
    result = await from_fleet(awaiting_fleet(request, answer))
    body = rerank_body(request_id, result.model, result.results, result.usage.total_tokens)
    return Response(msgspec.json.encode(body), media_type="application/json")
