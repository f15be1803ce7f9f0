"""Honest back-pressure: a request is admitted only while this gateway process holds fewer
requests, and fewer estimated tokens, than its caps allow, globally and for the request's
tenant. Past a cap it is refused at once with 429 and ``Retry-After``: a client is told to
come back rather than left waiting in a queue it cannot see. The counts are this process's
own (replicas multiply the caps): admitting and releasing stays a few integer operations,
with no round trip to Redis on every request."""

from __future__ import annotations

from collections import Counter
from collections.abc import Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from contracts.gateway_limits import GatewayLimits
from gateway.errors import OpenAIError


class Ticket:
    """One admitted request's share of the caps, given back once (``release``) when its
    answer is done, whole or streamed, or the request failed."""

    def __init__(self, admission: Admission, tenant: str, tokens: int) -> None:
        self._admission = admission
        self._tenant = tenant
        self._tokens = tokens
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._admission._release(self._tenant, self._tokens)


class Admission:
    def __init__(self, limits: GatewayLimits) -> None:
        self._limits = limits
        self.requests = 0
        self.tokens = 0
        self._tenant_requests: Counter[str] = Counter()
        self._tenant_tokens: Counter[str] = Counter()

    def admit(self, tenant: str, tokens: int) -> Ticket:
        """A ticket for a request of ``tokens`` estimated tokens, or OpenAIError 429."""
        limits = self._limits
        if self.requests >= limits.max_requests_in_flight:
            raise self._full(f"this gateway has {self.requests} requests in flight, its cap")
        if self._tenant_requests[tenant] >= limits.tenant_max_requests_in_flight:
            raise self._full(
                f"tenant {tenant!r} has {self._tenant_requests[tenant]} requests in flight, its cap"
            )
        # A request bigger than a token cap on its own is still let through when nothing
        # else is held: refusing it would refuse it for ever.
        if self.tokens and self.tokens + tokens > limits.max_tokens_in_flight:
            raise self._full(
                f"this gateway holds {self.tokens} estimated tokens; {tokens} more would pass "
                f"its cap of {limits.max_tokens_in_flight}"
            )
        held = self._tenant_tokens[tenant]
        if held and held + tokens > limits.tenant_max_tokens_in_flight:
            raise self._full(
                f"tenant {tenant!r} holds {held} estimated tokens; {tokens} more would pass "
                f"its cap of {limits.tenant_max_tokens_in_flight}"
            )
        self.requests += 1
        self.tokens += tokens
        self._tenant_requests[tenant] += 1
        self._tenant_tokens[tenant] += tokens
        return Ticket(self, tenant, tokens)

    def _release(self, tenant: str, tokens: int) -> None:
        self.requests -= 1
        self.tokens -= tokens
        self._tenant_requests[tenant] -= 1
        self._tenant_tokens[tenant] -= tokens
        if not self._tenant_requests[tenant]:
            del self._tenant_requests[tenant], self._tenant_tokens[tenant]

    def _full(self, why: str) -> OpenAIError:
        return OpenAIError(
            429,
            f"{why}: retry after {self._limits.retry_after_s} s",
            code="gateway_at_capacity",
            headers={"retry-after": str(self._limits.retry_after_s)},
        )


async def admitted(ticket: Ticket, answering: Coroutine[Any, Any, Response]) -> Response:
    """The answer, holding ``ticket`` until its last byte is sent (a stream's too) or the
    request fails."""
    try:
        response = await answering
    except BaseException:
        ticket.release()
        raise
    return _Releasing(response, ticket)


class _Releasing(Response):
    def __init__(self, response: Response, ticket: Ticket) -> None:
        # Not Response.__init__: this only wraps one made already.
        self._response = response
        self._ticket = ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._response(scope, receive, send)
        finally:
            self._ticket.release()
