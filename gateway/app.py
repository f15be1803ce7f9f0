"""The gateway's ASGI application: OpenAI's routes over fleet jobs, each request run as the
tenant whose key it carries."""

from __future__ import annotations

from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from contracts.gateway_limits import GatewayLimits
from contracts.tokens import estimate_prompt_tokens, estimate_tokens
from gateway import (
    batches,
    chat,
    embeddings,
    files,
    rerank,
    speech,
    transcription_stream,
    transcriptions,
)
from gateway.admission import Admission, Ticket, admitted
from gateway.chat_request import read_chat_call
from gateway.disconnect import ClientGone
from gateway.errors import OpenAIError, from_fleet
from gateway.front_door import FrontDoor
from gateway.key_rates import KeyRates
from gateway.keys import KeyRing
from gateway.metrics import GatewayMetrics
from gateway.models import ModelTable
from gateway.observe import TENANT
from gateway.request_ids import request_id
from producer_sdk import BatchClient, FleetClient, TenantClients


class GatewayState:
    """What the routes share: the tenants' clients, their keys, the served models, the
    caps on what is in flight and the keys' shared rate limits."""

    def __init__(
        self,
        clients: TenantClients,
        keys: KeyRing,
        models: ModelTable,
        limits: GatewayLimits,
        rates: KeyRates | None = None,
    ) -> None:
        """``rates``: the keys' shared rate limits (None: no key has one)."""
        self.clients = clients
        self.keys = keys
        self.models = models
        self.limits = limits
        self.admission = Admission(limits)
        self.rates = rates or KeyRates({})
        self.metrics = GatewayMetrics()
        self.ready = False  # every tenant's client open (its reply topic made)

    def tenant(self, request: Request) -> str:
        """The tenant whose key the request carries (OpenAIError 401 when none)."""
        tenant = self.keys.tenant(request.headers.get("authorization"))
        request.scope["state"][TENANT] = tenant  # the metrics' label
        return tenant

    async def admit(self, tenant: str, tokens: int) -> Ticket:
        """A ticket within this process's caps and ``tenant``'s shared rate limit, or
        OpenAIError 429. The caps are asked first: a request they refuse spends nothing of
        the rate limit, and a request the rate limit refuses gives its ticket back."""
        ticket = self.admission.admit(tenant, tokens)
        try:
            await self.rates.charge(tenant, tokens)
        except BaseException:
            ticket.release()
            raise
        return ticket

    async def client(self, tenant: str) -> FleetClient:
        """``tenant``'s client; 503 when it cannot be opened (Kafka unreachable)."""
        return await from_fleet(self.clients.of(tenant))

    async def batches(self, tenant: str) -> BatchClient:
        """``tenant``'s batch client; 503 when it cannot be opened (Kafka unreachable)."""
        return await from_fleet(self.clients.batches(tenant))


def gateway_app(state: GatewayState) -> Starlette:
    async def chat_completions(request: Request) -> Response:
        tenant = state.tenant(request)
        client = await state.client(tenant)
        call = read_chat_call(await request.body())
        state.models.check(call.model, "generate")
        completion = call.body.max_tokens or state.limits.assumed_completion_tokens
        tokens = estimate_prompt_tokens(call.body.messages, call.body.tools) + completion
        ticket = await state.admit(tenant, tokens)
        answer = chat.stream if call.stream else chat.complete
        return await admitted(ticket, answer(request, client, call, request_id(request.scope)))

    async def create_embeddings(request: Request) -> Response:
        tenant = state.tenant(request)
        client = await state.client(tenant)
        call = embeddings.read_embeddings_call(await request.body())
        state.models.check(call.model, "embed")
        texts = [call.input] if isinstance(call.input, str) else call.input
        ticket = await state.admit(tenant, sum(map(estimate_tokens, texts)))
        answering = embeddings.embed(request, client, call, request_id(request.scope))
        return await admitted(ticket, answering)

    async def audio_transcriptions(request: Request) -> Response:
        tenant = state.tenant(request)
        client = await state.client(tenant)
        content_type = request.headers.get("content-type")
        call = await transcriptions.read_transcription_call(content_type, await request.body())
        state.models.check(call.model, "transcribe")
        # Audio has no token estimate: it counts against the caps on requests alone.
        ticket = await state.admit(tenant, 0)
        answer = transcription_stream.stream if call.stream else transcriptions.transcribe
        return await admitted(ticket, answer(request, client, call, request_id(request.scope)))

    async def list_models(request: Request) -> Response:
        state.tenant(request)
        return Response(state.models.listing(), media_type="application/json")

    async def get_model(request: Request) -> Response:
        state.tenant(request)
        entry = state.models.entry(request.path_params["model"])
        return Response(entry, media_type="application/json")

    async def openai_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OpenAIError)
        headers = dict(exc.headers)
        if exc.status == 503:  # the fleet is down: when to look again
            headers.setdefault("retry-after", str(state.limits.retry_after_s))
        return Response(
            exc.body(), status_code=exc.status, media_type="application/json", headers=headers
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own refusals (no such route, wrong method) in OpenAI's shape."""
        assert isinstance(exc, HTTPException)
        return await openai_error(request, OpenAIError(exc.status_code, str(exc.detail)))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if state.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting"}, status_code=503)

    return _WithoutServerErrors(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/embeddings", create_embeddings, methods=["POST"]),
            Route("/v1/audio/transcriptions", audio_transcriptions, methods=["POST"]),
            Route("/v1/rerank", partial(rerank.create_rerank, state), methods=["POST"]),
            speech.route(state),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            *files.routes(state),
            *batches.routes(state),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", state.metrics.endpoint, methods=["GET"]),
        ],
        middleware=[Middleware(FrontDoor, metrics=state.metrics, limits=state.limits)],
        exception_handlers={
            OpenAIError: openai_error,
            HTTPException: http_error,
            ClientGone: _client_gone,
        },
    )


class _WithoutServerErrors(Starlette):
    """Starlette less its outermost layer, ServerErrorMiddleware, which answers a failure no
    handler took with a plain-text 500: FrontDoor, outermost instead, answers it in
    OpenAI's shape (gateway/front_door.py), and one layer fewer is one coroutine fewer on
    every request's way in and out."""

    def build_middleware_stack(self) -> ASGIApp:
        handlers = {k: v for k, v in self.exception_handlers.items() if k not in (500, Exception)}
        app: ASGIApp = ExceptionMiddleware(self.router, handlers=handlers, debug=self.debug)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app


async def _client_gone(request: Request, exc: Exception) -> Response:
    """No one is left to read it (its job is cancelled already): nginx's 499, for logs."""
    return Response(status_code=499)
