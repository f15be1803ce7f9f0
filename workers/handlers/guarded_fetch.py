"""GET of a URL a caller gave, through the UrlGuard: each hop (the URL and every redirect)
is checked, and its connection goes to the address the check answered, with the host's name
kept in the Host header and in TLS (SNI and the certificate check). Nothing resolves the
name a second time, so a name that rebinds between check and fetch reaches nothing new."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from workers.handlers.url_guard import Target, UrlGuard, UrlRefused
from workers.settings import CallerUrls

MAX_REDIRECTS = 5
FETCH_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes
    content_type: str  # the media type alone, lower case; "" when the server named none


class GuardedFetch:
    def __init__(
        self,
        guard: UrlGuard,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        self._guard = guard
        self._transport = transport
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def get(self, url: str, *, field: str, op: str, max_bytes: int) -> Fetched:
        """The body at ``url``; ProviderError invalid_input, naming ``field`` and the reason,
        when it (or a redirect) may not be fetched or is larger than ``max_bytes``."""
        where = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target = await self._guard.check(where)
            except UrlRefused as exc:
                via = "" if where == url else f" (it redirects to {where!r})"
                raise ProviderError(
                    ErrorCode.INVALID_INPUT, op, f"{field} {url!r} refused{via}: {exc.why}"
                ) from exc
            answer = await self._fetch_once(target, url, field, op, max_bytes)
            if isinstance(answer, Fetched):
                return answer
            where = urljoin(where, answer)
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"{field} {url!r} redirects more than {MAX_REDIRECTS} times",
        )

    async def _fetch_once(
        self, target: Target, url: str, field: str, op: str, max_bytes: int
    ) -> Fetched | str:
        """What this hop answered: its body, or where it redirects to."""
        try:
            async with self._http().stream(
                "GET",
                _pinned_url(target),
                headers={"host": _host_header(target)},
                extensions=_tls_name(target),
            ) as response:
                if response.is_redirect:
                    return str(response.headers.get("location", ""))
                if response.status_code == 404:
                    raise ProviderError(ErrorCode.NOT_FOUND, op, f"{field} {url!r} not found")
                if response.status_code >= 400:
                    raise ProviderError(
                        ErrorCode.PROVIDER_DOWN,
                        op,
                        f"fetching {field} {url!r} failed with HTTP {response.status_code}",
                    )
                body = bytearray()
                async for part in response.aiter_bytes():
                    body += part
                    if len(body) > max_bytes:
                        raise ProviderError(
                            ErrorCode.INVALID_INPUT,
                            op,
                            f"{field} {url!r} is larger than the {max_bytes}-byte limit",
                        )
                media_type = response.headers.get("content-type", "").partition(";")[0]
                return Fetched(bytes(body), media_type.strip().lower())
        except httpx.TimeoutException as exc:
            raise ProviderError(
                ErrorCode.TIMEOUT, op, f"fetching {field} {url!r} timed out"
            ) from exc
        except httpx.HTTPError as exc:
            message = f"fetching {field} {url!r} failed: {type(exc).__name__}"
            raise ProviderError(ErrorCode.PROVIDER_DOWN, op, message) from exc

    def _http(self) -> httpx.AsyncClient:
        # Made on first use: most workers never fetch, and a transport costs a TLS context.
        if self._client is None:
            self._client = httpx.AsyncClient(
                # No keep-alive: a pooled connection is keyed by address alone and would
                # carry a request for another name at that address under the first's TLS.
                transport=self._transport
                or httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0)),
                timeout=self._timeout_s,
                follow_redirects=False,  # each hop is checked here instead
                trust_env=False,  # a proxy from the environment would resolve the name again
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def caller_fetch(urls: CallerUrls) -> GuardedFetch:
    """The fetch of caller URLs the operator configured (`[caller_urls]`)."""
    return GuardedFetch(UrlGuard(urls.hosts, allowed_networks=urls.networks()))


def _pinned_url(target: Target) -> httpx.URL:
    """The URL with the checked address for its host, built from parts so that no parser
    reads a different host out of it."""
    parts = target.parts
    url = httpx.URL(
        scheme=parts.scheme,
        username=parts.username or "",
        password=parts.password or "",
        host=target.address,
        port=parts.port,
        path=parts.path or "/",
    )
    return url.copy_with(query=parts.query.encode()) if parts.query else url


def _host_header(target: Target) -> str:
    """The host as the caller named it (IDNA-encoded), with the port they wrote."""
    name = f"[{target.host}]" if ":" in target.host else target.host
    return name if target.parts.port is None else f"{name}:{target.parts.port}"


def _tls_name(target: Target) -> dict[str, str]:
    """The name TLS presents (SNI) and checks the certificate against: the host's, not the
    address connected to."""
    if target.parts.scheme != "https" or target.literal:
        return {}
    return {"sni_hostname": target.host}
