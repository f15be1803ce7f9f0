"""The gateway's back-pressure without a fleet: the caps on requests and estimated tokens
in flight, globally and per tenant, the 503 with Retry-After of a fleet it cannot reach,
and the 500 of a failure no handler takes."""

from __future__ import annotations

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from contracts.gateway_limits import GatewayLimits
from contracts.secrets import Secret
from gateway.admission import Admission
from gateway.app import GatewayState, gateway_app
from gateway.errors import OpenAIError
from gateway.front_door import FrontDoor
from gateway.keys import KeyRing
from gateway.metrics import GatewayMetrics
from gateway.models import ModelTable
from producer_sdk import TenantClients
from transport.connection import as_connection


def _refused(admission: Admission, tenant: str, tokens: int) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        admission.admit(tenant, tokens)
    return caught.value


def test_each_cap_refuses_with_429_and_retry_after_until_a_ticket_is_given_back() -> None:
    limits = GatewayLimits(
        max_requests_in_flight=3,
        tenant_max_requests_in_flight=2,
        max_tokens_in_flight=1000,
        tenant_max_tokens_in_flight=600,
        retry_after_s=2,
    )
    admission = Admission(limits)
    first = admission.admit("acme", 100)
    admission.admit("acme", 100)
    by_tenant = _refused(admission, "acme", 1)  # acme's third request
    other = admission.admit("globex", 100)
    overall = _refused(admission, "initech", 1)  # the gateway's fourth request
    assert (by_tenant.status, overall.status) == (429, 429)
    assert by_tenant.headers == overall.headers == {"retry-after": "2"}
    assert by_tenant.code == "gateway_at_capacity"
    assert "acme" in by_tenant.message
    first.release()
    first.release()  # once only: a second release gives nothing back
    assert admission.requests == 2
    assert "600" in _refused(admission, "acme", 501).message  # acme's tokens: 100 + 501
    other.release()
    assert "1000" in _refused(admission, "globex", 901).message  # all tokens: 100 + 901
    admission.admit("globex", 500)
    assert (admission.requests, admission.tokens) == (2, 600)


def test_a_request_larger_than_a_token_cap_goes_when_nothing_else_is_held() -> None:
    admission = Admission(GatewayLimits(max_tokens_in_flight=10, tenant_max_tokens_in_flight=10))
    big = admission.admit("acme", 50)  # refused for ever otherwise
    _refused(admission, "acme", 1)
    big.release()
    assert (admission.requests, admission.tokens) == (0, 0)


async def test_a_fleet_it_cannot_reach_is_503_with_retry_after() -> None:
    clients = TenantClients(as_connection("127.0.0.1:1"), "test", {}, client_name="gateway")
    state = GatewayState(
        clients,
        KeyRing({"acme": Secret("sk-acme")}),
        ModelTable({"m": "generate"}),
        GatewayLimits(retry_after_s=3),
    )
    transport = httpx.ASGITransport(app=gateway_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        answer = await http.post(
            "/v1/chat/completions",
            headers={"authorization": "Bearer sk-acme"},
            json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
        )
    await clients.aclose()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "3"
    assert answer.json()["error"]["code"] == "fleet_unavailable"
    assert "127.0.0.1" not in answer.text  # the brokers' addresses stay in the log
    assert float(answer.headers["x-fleet-gateway-overhead-ms"]) >= 0
    assert state.admission.requests == 0


async def test_a_failure_no_handler_takes_is_openais_500_and_is_raised_on() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a bug")

    front = FrontDoor(failing, metrics=GatewayMetrics(), limits=GatewayLimits())
    transport = httpx.ASGITransport(app=front)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        with pytest.raises(RuntimeError, match="a bug"):  # on to the server, which logs it
            await http.get("/v1/models")
    transport = httpx.ASGITransport(app=front, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        answer = await http.get("/v1/models")
    assert answer.status_code == 500
    assert answer.json()["error"] == {
        "message": "the gateway failed on this request (RuntimeError); it is logged",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
    assert answer.headers["x-request-id"]
