"""The gateway's ASGI application: OpenAI's routes over fleet jobs, each request run as the
tenant whose key it carries."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import chat, embeddings
from gateway.chat_request import read_chat_call
from gateway.disconnect import ClientGone
from gateway.errors import OpenAIError
from gateway.keys import KeyRing
from gateway.models import ModelTable
from gateway.request_ids import RequestIds, request_id
from producer_sdk import FleetClient, TenantClients


class GatewayState:
    """What the routes share: the tenants' clients, their keys and the served models."""

    def __init__(self, clients: TenantClients, keys: KeyRing, models: ModelTable) -> None:
        self.clients = clients
        self.keys = keys
        self.models = models
        self.ready = False  # every tenant's client open (its reply topic made)

    async def client(self, request: Request) -> FleetClient:
        tenant = self.keys.tenant(request.headers.get("authorization"))
        return await self.clients.of(tenant)


def gateway_app(state: GatewayState) -> Starlette:
    async def chat_completions(request: Request) -> Response:
        client = await state.client(request)
        call = read_chat_call(await request.body())
        state.models.check(call.model, "generate")
        answer = chat.stream if call.stream else chat.complete
        return await answer(request, client, call, request_id(request.scope))

    async def create_embeddings(request: Request) -> Response:
        client = await state.client(request)
        call = embeddings.read_embeddings_call(await request.body())
        state.models.check(call.model, "embed")
        return await embeddings.embed(request, client, call, request_id(request.scope))

    async def list_models(request: Request) -> Response:
        await state.client(request)
        return Response(state.models.listing(), media_type="application/json")

    async def get_model(request: Request) -> Response:
        await state.client(request)
        entry = state.models.entry(request.path_params["model"])
        return Response(entry, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if state.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting"}, status_code=503)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/embeddings", create_embeddings, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        middleware=[Middleware(RequestIds)],
        exception_handlers={
            OpenAIError: _openai_error,
            HTTPException: _http_error,
            ClientGone: _client_gone,
        },
    )


async def _openai_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIError)
    return Response(exc.body(), status_code=exc.status, media_type="application/json")


async def _client_gone(request: Request, exc: Exception) -> Response:
    """No one is left to read it (its job is cancelled already): nginx's 499, for logs."""
    return Response(status_code=499)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in OpenAI's shape."""
    assert isinstance(exc, HTTPException)
    return await _openai_error(request, OpenAIError(exc.status_code, str(exc.detail)))
