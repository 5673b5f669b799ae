"""HTTP calls to URLs a workflow names, safe against server-side request forgery (SSRF).

Every hop (the first request and each redirect, followed here rather than by httpx) is checked
before anything is sent:

- only ``http``/``https``, no userinfo (``user:pass@``), a well-formed host;
- IP literals only in canonical form: ``2130706433``, ``0x7f.1`` or ``127.1`` are refused rather
  than guessed at (resolvers read them as 127.0.0.1);
- the host is resolved once, and every address it resolves to must be public: loopback,
  private, link-local, shared (100.64/10), multicast, reserved and unspecified addresses are
  refused, also when wrapped in an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address, unless the
  host name or the address is allow-listed in the policy;
- cloud metadata endpoints (169.254.169.254, fd00:ec2::254, 100.100.100.200,
  metadata.google.internal, ...) are refused even when allow-listed: no workflow needs the
  machine's credentials.

The connection then goes to the exact address that was checked (no second DNS lookup, so DNS
rebinding cannot swap it), with the URL's host name kept in the ``Host`` header and as the TLS
server name (SNI and certificate verification). The whole call, DNS and redirects included, has
one deadline, and the body is read as a stream up to the policy's size limit.

Headers passed in are never logged (they often carry credentials); on a redirect to another
origin only the headers in ``CROSS_ORIGIN_HEADERS`` go along.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json as jsonlib
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.errors import ConfigurationError, DependencyUnavailable, InvalidInput
from shared.settings import WorkflowSettings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves ``(host, port)`` to the host's IP addresses, as strings."""

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI instance metadata
        "169.254.169.253",  # AWS VPC DNS
        "169.254.169.123",  # AWS time sync
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity
        "fd00:ec2::254",  # AWS instance metadata (IPv6)
        "fd00:ec2::23",  # AWS EKS Pod Identity (IPv6)
        "100.100.100.200",  # Alibaba Cloud metadata
        "192.0.0.192",  # Oracle Cloud Classic metadata
    )
)
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
CROSS_ORIGIN_HEADERS = frozenset({"accept", "accept-language", "content-type", "user-agent"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "quarry-workflows"

_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_HOSTNAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")
# WHATWG URL parsing reads a host whose last label is a number as an IPv4 address.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class DestinationNotAllowed(InvalidInput):
    """The URL's destination is refused by the SSRF policy; ``details["reason"]`` says why."""

    code = "destination_not_allowed"


@dataclass(frozen=True)
class HttpPolicy:
    timeout_s: float
    max_response_bytes: int
    max_redirects: int
    allow_hosts: frozenset[str] = frozenset()
    allow_cidrs: tuple[IPNetwork, ...] = ()
    allowed_schemes: frozenset[str] = frozenset({"http", "https"})

    @classmethod
    def from_settings(cls, settings: WorkflowSettings) -> HttpPolicy:
        try:
            cidrs = tuple(ipaddress.ip_network(cidr) for cidr in settings.http_allow_cidrs)
        except ValueError as exc:
            raise ConfigurationError(f"QUARRY_WORKFLOWS__HTTP_ALLOW_CIDRS: {exc}") from exc
        return cls(
            timeout_s=settings.http_timeout_s,
            max_response_bytes=settings.http_max_response_bytes,
            max_redirects=settings.http_max_redirects,
            allow_hosts=frozenset(_normalise_host(host) for host in settings.http_allow_hosts),
            allow_cidrs=cidrs,
        )


@dataclass(frozen=True)
class HttpResponse:
    """A response read whole: ``body`` is decoded (Content-Encoding undone) and at most the
    policy's ``max_response_bytes``; ``url`` is the final URL, after redirects."""

    status: int
    headers: dict[str, str]
    body: bytes
    url: str

    def text(self) -> str:
        """The body decoded with the charset the response declares (UTF-8 when none)."""
        content_type = {"content-type": self.headers.get("content-type", "")}
        return httpx.Response(self.status, headers=content_type, content=self.body).text

    def json(self) -> Any:
        try:
            return jsonlib.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                "The response body is not valid JSON",
                code="invalid_response_json",
                details={"url": _redacted(httpx.URL(self.url)), "status": self.status},
            ) from exc


@dataclass(frozen=True)
class _Destination:
    address: IPAddress
    ip_literal: bool


@dataclass
class _Hop:
    method: str
    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the system resolver, without blocking the event loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class SafeHttpClient:
    def __init__(
        self,
        policy: HttpPolicy,
        *,
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._policy = policy
        self._resolver: Resolver = resolver or resolve_host
        self._transport = transport
        self._ssl_context: ssl.SSLContext | None = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
    ) -> HttpResponse:
        """Send one request (following redirects) and return the final response.

        Raises ``DestinationNotAllowed`` for a refused destination, ``InvalidInput``
        (``response_too_large``, ``too_many_redirects``, ``invalid_url``) and
        ``DependencyUnavailable`` (``http_timeout``, ``http_call_failed``).
        """
        hop = _Hop(method.upper(), _parse_url(url), _request_headers(headers, json))
        if json is not None:
            hop.body = jsonlib.dumps(json).encode()
        elif content is not None:
            hop.body = content.encode() if isinstance(content, str) else content
        host = hop.url.host
        try:
            async with asyncio.timeout(self._policy.timeout_s):
                return await self._follow(hop)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise DependencyUnavailable(
                f"{host} did not answer within {self._policy.timeout_s:g}s",
                code="http_timeout",
                details={"host": host, "timeout_s": self._policy.timeout_s},
            ) from exc
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(
                f"HTTP call to {host} failed: {type(exc).__name__}: {exc}",
                code="http_call_failed",
                details={"host": host},
            ) from exc

    async def _follow(self, hop: _Hop) -> HttpResponse:
        for _ in range(self._policy.max_redirects + 1):
            destination = await self._check(hop.url)
            response = await self._send(hop, destination)
            location = response.headers.get("location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            hop = _redirected(hop, response.status, location)
        raise InvalidInput(
            f"More than {self._policy.max_redirects} redirects",
            code="too_many_redirects",
            details={"max_redirects": self._policy.max_redirects},
        )

    async def _check(self, url: httpx.URL) -> _Destination:
        """Refuse a URL the policy does not allow; return the one address to connect to."""
        if url.scheme not in self._policy.allowed_schemes:
            raise _refused(url, "scheme_not_allowed", scheme=url.scheme)
        if url.userinfo:
            raise _refused(url, "userinfo_in_url")
        host = url.raw_host.decode("ascii").lower()
        if not host:
            raise _refused(url, "missing_host")
        name = _normalise_host(host)
        if name in METADATA_HOSTNAMES:
            raise _refused(url, "metadata_address")
        literal = _ip_literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            if not _HOSTNAME.match(host):
                raise _refused(url, "invalid_host")
            if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
                raise _refused(url, "non_canonical_ip")
            addresses = await self._resolve(url, host)
        host_allowed = name in self._policy.allow_hosts
        for address in addresses:
            reason = forbidden_address_reason(address)
            if reason is None:
                continue
            if reason != "metadata_address" and (host_allowed or self._cidr_allowed(address)):
                continue
            raise _refused(url, reason, address=str(address))
        return _Destination(addresses[0], ip_literal=literal is not None)

    async def _resolve(self, url: httpx.URL, host: str) -> list[IPAddress]:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            found = await self._resolver(host, port)
            addresses = [ipaddress.ip_address(address) for address in found]
        except (OSError, ValueError) as exc:
            raise DependencyUnavailable(
                f"Could not resolve {host}", code="http_call_failed", details={"host": host}
            ) from exc
        if not addresses:
            raise DependencyUnavailable(
                f"{host} has no address", code="http_call_failed", details={"host": host}
            )
        return addresses

    def _cidr_allowed(self, address: IPAddress) -> bool:
        candidates = [address]
        embedded = embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
        return any(
            candidate in network
            for candidate in candidates
            for network in self._policy.allow_cidrs
            if candidate.version == network.version
        )

    async def _send(self, hop: _Hop, destination: _Destination) -> HttpResponse:
        """One request to the checked address, the URL's host kept for ``Host`` and TLS."""
        url = hop.url
        extensions: dict[str, Any] = {"timeout": httpx.Timeout(self._policy.timeout_s).as_dict()}
        if url.scheme == "https" and not destination.ip_literal:
            # SNI and certificate names carry no trailing dot (RFC 6066).
            extensions["sni_hostname"] = _normalise_host(url.raw_host.decode("ascii"))
        request = httpx.Request(
            hop.method,
            url.copy_with(host=str(destination.address)),
            headers={**hop.headers, "Host": url.netloc.decode("ascii")},
            content=hop.body,
            extensions=extensions,
        )
        # A transport per call: pooled connections are keyed by address, and a connection
        # verified for one host name must not carry a request for another.
        transport = self._transport or httpx.AsyncHTTPTransport(
            verify=self._tls_context(), retries=0
        )
        try:
            response = await transport.handle_async_request(request)
            try:
                body = await self._read_body(response, url)
            finally:
                await response.aclose()
        finally:
            if self._transport is None:
                await transport.aclose()
        # The body is decoded, so the encoding header no longer describes it.
        headers = {k: v for k, v in response.headers.items() if k != "content-encoding"}
        return HttpResponse(response.status_code, headers, body, str(url))

    async def _read_body(self, response: httpx.Response, url: httpx.URL) -> bytes:
        limit = self._policy.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(url, limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise _too_large(url, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context


def forbidden_address_reason(address: IPAddress) -> str | None:
    """Why a workflow may not call ``address`` (before any allow-list), or None if it may."""
    if address in METADATA_ADDRESSES:
        return "metadata_address"
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return forbidden_address_reason(embedded)
    if address.is_unspecified:
        return "unspecified_address"
    if address.is_loopback:
        return "loopback_address"
    if address.is_link_local:
        return "link_local_address"
    if address.is_multicast:
        return "multicast_address"
    if address in _SHARED_ADDRESS_SPACE:
        return "shared_address"
    if address.is_reserved:
        return "reserved_address"
    if address.is_private or not address.is_global:
        return "private_address"
    return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address routes to."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _parse_url(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"Invalid URL: {exc}", code="invalid_url") from exc


def _request_headers(headers: Mapping[str, str] | None, json: Any) -> dict[str, str]:
    merged = {"user-agent": USER_AGENT}
    if json is not None:
        merged["content-type"] = "application/json"
    for name, value in (headers or {}).items():
        if name.lower() != "host":
            merged[name.lower()] = value
    return merged


def _redirected(hop: _Hop, status: int, location: str) -> _Hop:
    """The next hop of a redirect, as browsers (and httpx) follow one."""
    try:
        url = hop.url.join(location)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"Invalid redirect location: {exc}", code="invalid_url") from exc
    method, body, headers = hop.method, hop.body, dict(hop.headers)
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers.pop("content-type", None)
    if (url.scheme, url.raw_host, url.port) != (hop.url.scheme, hop.url.raw_host, hop.url.port):
        headers = {name: value for name, value in headers.items() if name in CROSS_ORIGIN_HEADERS}
    return _Hop(method, url, headers, body)


def _redacted(url: httpx.URL) -> str:
    """The URL without its query string and fragment, which may carry secrets."""
    return str(url.copy_with(query=None, fragment=None))


def _refused(url: httpx.URL, reason: str, **details: str) -> DestinationNotAllowed:
    host = url.host
    log.warning("http destination refused", extra={"host": host, "reason": reason, **details})
    return DestinationNotAllowed(
        f"Calls to {host or 'this URL'} are not allowed ({reason.replace('_', ' ')})",
        details={"reason": reason, "host": host, **details},
    )


def _too_large(url: httpx.URL, limit: int) -> InvalidInput:
    return InvalidInput(
        f"The response from {url.host} is larger than {limit} bytes",
        code="response_too_large",
        details={"host": url.host, "max_response_bytes": limit},
    )
