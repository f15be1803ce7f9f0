"""The same small endpoint in each ASGI framework bench/gateway_frameworks.py compares: a
POST whose JSON body msgspec decodes and whose answer msgspec encodes (the gateway's own
work per request, minus the fleet)."""

from __future__ import annotations

from typing import Any

import msgspec


class Echo(msgspec.Struct):
    model: str
    messages: list[dict[str, Any]]


def _answer(raw: bytes) -> bytes:
    body = msgspec.json.decode(raw, type=Echo)
    return msgspec.json.encode({"object": "chat.completion", "model": body.model, "n": 1})


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def echo(request: Request) -> Response:
        return Response(_answer(await request.body()), media_type="application/json")

    return Starlette(routes=[Route("/v1/echo", echo, methods=["POST"])])


def litestar_app() -> Any:
    from litestar import Litestar, Request, Response, post

    @post("/v1/echo", status_code=200)
    async def echo(request: Request[Any, Any, Any]) -> Response[bytes]:
        return Response(_answer(await request.body()), media_type="application/json")

    # The names its annotations use (strings here: `from __future__ import annotations`).
    names = {"Any": Any, "Request": Request, "Response": Response}
    return Litestar(route_handlers=[echo], signature_namespace=names)
