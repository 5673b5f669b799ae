"""SSRF-safe HTTP: every refused destination, redirects re-checked, pinning, limits, TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.errors import ConfigurationError, DependencyUnavailable, InvalidInput
from shared.settings import WorkflowSettings
from shared.workflows.safe_http import (
    DestinationNotAllowed,
    HttpPolicy,
    HttpResponse,
    SafeHttpClient,
)

pytestmark = pytest.mark.unit

PUBLIC_IP = "93.184.216.34"


def policy(**overrides: object) -> HttpPolicy:
    values: dict[str, object] = {"timeout_s": 5.0, "max_response_bytes": 1024, "max_redirects": 3}
    values.update(overrides)
    return HttpPolicy(**values)  # type: ignore[arg-type]


class FakeDns:
    """A resolver answering from a table, recording every lookup."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return self.table[host]


class Recorder:
    """A mock transport answering with ``respond`` and keeping every request it was sent."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond or (lambda request: httpx.Response(200, json={"ok": True}))
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)


def client(
    recorder: Recorder | None = None,
    dns: dict[str, Sequence[str]] | FakeDns | None = None,
    **policy_overrides: object,
) -> SafeHttpClient:
    resolver = dns if isinstance(dns, FakeDns) else FakeDns(dns or {})
    return SafeHttpClient(
        policy(**policy_overrides),
        resolver=resolver,
        transport=(recorder or Recorder()).transport,
    )


async def refusal(http: SafeHttpClient, url: str) -> DestinationNotAllowed:
    with pytest.raises(DestinationNotAllowed) as caught:
        await http.request("GET", url)
    assert caught.value.code == "destination_not_allowed"
    assert caught.value.status_code == 422
    return caught.value


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback_address"),
        ("http://127.10.0.1:8080/", "loopback_address"),
        ("http://[::1]/", "loopback_address"),
        ("http://10.1.2.3/", "private_address"),
        ("http://172.16.5.4/", "private_address"),
        ("http://172.31.255.254/", "private_address"),
        ("http://192.168.1.1/", "private_address"),
        ("http://[fc00::1]/", "private_address"),
        ("http://[fd12:3456::1]/", "private_address"),
        ("http://169.254.169.254/latest/meta-data/", "metadata_address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "metadata_address"),
        ("http://169.254.170.2/v2/credentials", "metadata_address"),
        ("http://100.100.100.200/latest/meta-data/", "metadata_address"),
        ("http://169.254.1.1/", "link_local_address"),
        ("http://[fe80::1]/", "link_local_address"),
        ("http://100.64.0.1/", "shared_address"),
        ("http://0.0.0.0/", "unspecified_address"),
        ("http://[::]/", "unspecified_address"),
        ("http://224.0.0.1/", "multicast_address"),
        ("http://[ff02::1]/", "multicast_address"),
        ("http://240.0.0.1/", "reserved_address"),
        ("http://192.0.2.1/", "private_address"),
        ("http://[::ffff:127.0.0.1]/", "loopback_address"),
        ("http://[::ffff:7f00:1]/", "loopback_address"),
        ("http://[::ffff:169.254.169.254]/", "metadata_address"),
        ("http://[::ffff:10.0.0.1]/", "private_address"),
        ("http://[2002:7f00:1::]/", "loopback_address"),
        ("http://[2002:a9fe:a9fe::]/", "metadata_address"),
        ("http://[64:ff9b::a00:1]/", "private_address"),
        ("http://[64:ff9b::7f00:1]/", "loopback_address"),
        ("http://[64:ff9b:1::1]/", "reserved_address"),
    ],
)
async def test_refuses_non_public_ip_literals(url: str, reason: str) -> None:
    recorder = Recorder()
    error = await refusal(client(recorder), url)
    assert error.details["reason"] == reason
    assert recorder.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://127.1/",
        "http://10.1/",
        "http://example.0x10/",
        "http://3232235777:8080/x",
    ],
)
async def test_refuses_non_canonical_ip_encodings(url: str) -> None:
    dns = FakeDns({})
    error = await refusal(client(dns=dns), url)
    assert error.details["reason"] == "non_canonical_ip"
    assert dns.lookups == []


async def test_refuses_octal_dotted_quad_as_invalid_url() -> None:
    with pytest.raises(InvalidInput) as caught:
        await client().request("GET", "http://0177.0.0.1/")
    assert caught.value.code == "invalid_url"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://user:secret@example.com/", "userinfo_in_url"),
        ("http://user@example.com/", "userinfo_in_url"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("ftp://example.com/file", "scheme_not_allowed"),
        ("gopher://example.com:70/_x", "scheme_not_allowed"),
        ("http:///path-only", "missing_host"),
        ("http://exa%20mple.com/", "invalid_host"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata_address"),
        ("http://METADATA.google.internal./computeMetadata/v1/", "metadata_address"),
        ("http://instance-data/latest/", "metadata_address"),
    ],
)
async def test_refuses_urls_by_form(url: str, reason: str) -> None:
    dns = FakeDns({"example.com": [PUBLIC_IP]})
    error = await refusal(client(dns=dns), url)
    assert error.details["reason"] == reason
    assert "secret" not in error.message
    assert "secret" not in str(error.details)


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.7"], ["127.0.0.1"], ["169.254.169.254"], [PUBLIC_IP, "192.168.0.3"], ["::1"]],
)
async def test_refuses_a_host_resolving_to_any_non_public_address(addresses: list[str]) -> None:
    recorder = Recorder()
    error = await refusal(
        client(recorder, {"internal.example.com": addresses}), "https://internal.example.com/"
    )
    assert error.details["host"] == "internal.example.com"
    assert error.details["address"] in addresses
    assert recorder.requests == []


async def test_connects_to_the_checked_address_without_a_second_lookup() -> None:
    # A rebinding DNS answers a public address first and loopback on every later lookup.
    answers = iter([[PUBLIC_IP]])

    class RebindingDns(FakeDns):
        async def __call__(self, host: str, port: int) -> Sequence[str]:
            self.lookups.append(host)
            return next(answers, ["127.0.0.1"])

    dns = RebindingDns({})
    recorder = Recorder()
    response = await client(recorder, dns).request("GET", "https://api.example.com:8443/v1?q=1")
    assert response.status == 200
    assert dns.lookups == ["api.example.com"]
    [request] = recorder.requests
    assert request.url.host == PUBLIC_IP
    assert request.url.port == 8443
    assert request.url.raw_path == b"/v1?q=1"
    assert request.headers["host"] == "api.example.com:8443"
    assert request.extensions["sni_hostname"] == "api.example.com"
    assert response.url == "https://api.example.com:8443/v1?q=1"


async def test_an_ip_literal_is_sent_without_sni_and_without_lookup() -> None:
    dns, recorder = FakeDns({}), Recorder()
    await client(recorder, dns).request("GET", f"https://{PUBLIC_IP}/")
    assert dns.lookups == []
    assert "sni_hostname" not in recorder.requests[0].extensions
    assert recorder.requests[0].headers["host"] == PUBLIC_IP


def redirect(location: str, status: int = 302) -> httpx.Response:
    return httpx.Response(status, headers={"location": location})


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://10.0.0.5/admin", "private_address"),
        ("http://169.254.169.254/latest/meta-data/iam/", "metadata_address"),
        ("http://localhost.example.net/", "loopback_address"),
        ("http://2130706433/", "non_canonical_ip"),
        ("file:///etc/passwd", "scheme_not_allowed"),
    ],
)
async def test_every_redirect_hop_is_checked(location: str, reason: str) -> None:
    recorder = Recorder(lambda request: redirect(location))
    http = client(
        recorder, {"public.example.com": [PUBLIC_IP], "localhost.example.net": ["127.0.0.1"]}
    )
    error = await refusal(http, "http://public.example.com/start")
    assert error.details["reason"] == reason
    assert len(recorder.requests) == 1


async def test_follows_redirects_to_allowed_hosts_and_keeps_credentials_on_origin() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.headers["host"] == "a.example.com" and request.url.path == "/start":
            return redirect("/moved", 307)
        if request.headers["host"] == "a.example.com":
            return redirect("https://b.example.com/final", 303)
        return httpx.Response(200, text="done")

    recorder = Recorder(respond)
    dns = FakeDns({"a.example.com": [PUBLIC_IP], "b.example.com": ["2606:2800:220:1::1"]})
    response = await client(recorder, dns).request(
        "POST",
        "http://a.example.com/start",
        headers={"Authorization": "Bearer s3cret", "X-Api-Key": "k", "Accept": "text/plain"},
        json={"n": 1},
    )
    assert response.text() == "done"
    assert response.url == "https://b.example.com/final"
    assert dns.lookups == ["a.example.com", "a.example.com", "b.example.com"]
    first, second, third = recorder.requests
    assert (first.method, second.method, third.method) == ("POST", "POST", "GET")
    assert second.content == b'{"n": 1}'  # 307 keeps the method and the body
    assert second.headers["authorization"] == "Bearer s3cret"  # same origin
    assert third.content == b""
    assert third.url.host == "2606:2800:220:1::1"
    assert "authorization" not in third.headers
    assert "x-api-key" not in third.headers
    assert third.headers["accept"] == "text/plain"


async def test_too_many_redirects() -> None:
    recorder = Recorder(lambda request: redirect("/again"))
    with pytest.raises(InvalidInput) as caught:
        await client(recorder, {"loop.example.com": [PUBLIC_IP]}, max_redirects=2).request(
            "GET", "http://loop.example.com/"
        )
    assert caught.value.code == "too_many_redirects"
    assert len(recorder.requests) == 3


async def test_allow_listed_host_may_resolve_to_a_private_address() -> None:
    recorder = Recorder()
    http = client(
        recorder, {"intranet.corp.": ["10.20.0.9"]}, allow_hosts=frozenset({"intranet.corp"})
    )
    response = await http.request("GET", "http://INTRANET.corp./status")
    assert response.status == 200
    assert recorder.requests[0].url.host == "10.20.0.9"
    await refusal(http, "http://10.20.0.9/status")  # the address itself is not allow-listed


async def test_allow_listed_cidr_admits_its_addresses_only() -> None:
    recorder = Recorder()
    http = client(
        recorder,
        {"svc.internal": ["10.1.2.3"], "db.internal": ["10.2.0.1"]},
        allow_cidrs=(ipaddress.ip_network("10.1.0.0/16"),),
    )
    for url in ("http://10.1.2.3/", "http://[::ffff:10.1.2.3]/", "http://svc.internal/"):
        assert (await http.request("GET", url)).status == 200
    error = await refusal(http, "http://db.internal/")
    assert error.details["address"] == "10.2.0.1"


async def test_metadata_stays_refused_when_allow_listed() -> None:
    http = client(
        dns={"metadata.google.internal": ["169.254.169.254"]},
        allow_hosts=frozenset({"metadata.google.internal"}),
        allow_cidrs=(ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fd00::/8")),
    )
    for url in (
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/",
    ):
        assert (await refusal(http, url)).details["reason"] == "metadata_address"


async def test_response_size_cap_on_declared_length() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, content=b"x" * 2048))
    with pytest.raises(InvalidInput) as caught:
        await client(recorder, {"big.example.com": [PUBLIC_IP]}).request(
            "GET", "http://big.example.com/"
        )
    assert caught.value.code == "response_too_large"
    assert caught.value.details["max_response_bytes"] == 1024


async def test_response_size_cap_on_a_stream_without_length() -> None:
    produced: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            produced.append(1)
            yield b"y" * 100

    recorder = Recorder(lambda request: httpx.Response(200, content=endless()))
    with pytest.raises(InvalidInput) as caught:
        await client(recorder, {"stream.example.com": [PUBLIC_IP]}).request(
            "GET", "http://stream.example.com/"
        )
    assert caught.value.code == "response_too_large"
    assert len(produced) == 11  # reading stopped at the first chunk past the limit


async def test_a_response_at_the_limit_is_returned_whole() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, content=b"z" * 1024))
    response = await client(recorder, {"ok.example.com": [PUBLIC_IP]}).request(
        "GET", "http://ok.example.com/"
    )
    assert response.body == b"z" * 1024


async def test_a_server_that_never_answers_times_out() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    http = SafeHttpClient(
        policy(timeout_s=0.05),
        resolver=FakeDns({"slow.example.com": [PUBLIC_IP]}),
        transport=httpx.MockTransport(hang),
    )
    with pytest.raises(DependencyUnavailable) as caught:
        await http.request("GET", "http://slow.example.com/")
    assert caught.value.code == "http_timeout"
    assert caught.value.status_code == 503


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ConnectTimeout("connect timed out"), "http_timeout"),
        (httpx.ReadTimeout("read timed out"), "http_timeout"),
        (httpx.ConnectError("connection refused"), "http_call_failed"),
        (httpx.RemoteProtocolError("bad response"), "http_call_failed"),
    ],
)
async def test_transport_failures_are_dependency_errors(error: Exception, code: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    http = SafeHttpClient(
        policy(),
        resolver=FakeDns({"down.example.com": [PUBLIC_IP]}),
        transport=httpx.MockTransport(fail),
    )
    with pytest.raises(DependencyUnavailable) as caught:
        await http.request("GET", "http://down.example.com/", headers={"X-Token": "t0ps3cret"})
    assert caught.value.code == code
    assert "t0ps3cret" not in caught.value.message


async def test_an_unresolvable_host_is_a_dependency_error() -> None:
    with pytest.raises(DependencyUnavailable) as caught:
        await client(dns={}).request("GET", "http://nowhere.example.com/")
    assert caught.value.code == "http_call_failed"


async def test_response_text_and_json() -> None:
    body = "grüße".encode("latin-1")
    recorder = Recorder(
        lambda request: httpx.Response(
            200, content=body, headers={"content-type": "text/plain; charset=latin-1"}
        )
    )
    response = await client(recorder, {"t.example.com": [PUBLIC_IP]}).request(
        "GET", "http://t.example.com/"
    )
    assert response.text() == "grüße"
    with pytest.raises(InvalidInput) as caught:
        response.json()
    assert caught.value.code == "invalid_response_json"
    assert HttpResponse(200, {}, b'{"a": [1]}', "http://x/").json() == {"a": [1]}


async def test_policy_from_settings() -> None:
    settings = WorkflowSettings(
        http_allow_hosts=["Intranet.Corp."], http_allow_cidrs=["10.0.0.0/8", "fd00:1::/32"]
    )
    built = HttpPolicy.from_settings(settings)
    assert built.allow_hosts == frozenset({"intranet.corp"})
    assert built.allow_cidrs == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00:1::/32"),
    )
    assert (built.timeout_s, built.max_response_bytes, built.max_redirects) == (10.0, 1048576, 3)
    with pytest.raises(ConfigurationError):
        HttpPolicy.from_settings(WorkflowSettings(http_allow_cidrs=["10.0.0.1/8"]))


# A real server on loopback: reachable only because the test allow-lists 127.0.0.0/8, under a
# host name no DNS knows, so a response proves the connection went to the pinned address.

LOOPBACK_ONLY = (ipaddress.ip_network("127.0.0.0/8"),)
Handler = Callable[[bytes], Awaitable[bytes]]


@asynccontextmanager
async def local_server(
    respond: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[int, list[bytes]]]:
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        writer.write(await respond(head))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    async with server:
        yield server.sockets[0].getsockname()[1], heads


async def ok_response(head: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"


async def test_real_connection_goes_to_the_pinned_address() -> None:
    async with local_server(ok_response) as (port, heads):
        http = SafeHttpClient(
            policy(allow_cidrs=LOOPBACK_ONLY),
            resolver=FakeDns({"service.test": ["127.0.0.1"]}),
        )
        response = await http.request("GET", f"http://service.test:{port}/ping")
    assert (response.status, response.body) == (200, b"hello")
    assert heads[0].startswith(b"GET /ping HTTP/1.1\r\n")
    assert f"Host: service.test:{port}\r\n".encode() in heads[0]


async def test_real_chunked_stream_is_cut_at_the_limit() -> None:
    async def chunked(head: bytes) -> bytes:
        chunk = b"64\r\n" + b"x" * 100 + b"\r\n"
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 50 + b"0\r\n\r\n"

    async with local_server(chunked) as (port, _):
        http = SafeHttpClient(
            policy(allow_cidrs=LOOPBACK_ONLY),
            resolver=FakeDns({"service.test": ["127.0.0.1"]}),
        )
        with pytest.raises(InvalidInput) as caught:
            await http.request("GET", f"http://service.test:{port}/")
    assert caught.value.code == "response_too_large"


def tls_contexts(tmp_path: Path, cert_host: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for ``cert_host``, a client trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cert_host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cert_host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    return server, client_context


async def test_tls_is_verified_against_the_host_name_not_the_address(tmp_path: Path) -> None:
    server_tls, client_tls = tls_contexts(tmp_path, "service.test")
    async with local_server(ok_response, server_tls) as (port, heads):
        http = SafeHttpClient(
            policy(allow_cidrs=LOOPBACK_ONLY),
            resolver=FakeDns({"service.test": ["127.0.0.1"]}),
            transport=httpx.AsyncHTTPTransport(verify=client_tls),
        )
        response = await http.request("GET", f"https://service.test:{port}/secure")
    assert response.body == b"hello"
    assert f"Host: service.test:{port}\r\n".encode() in heads[0]


async def test_tls_to_a_host_the_certificate_does_not_name_fails(tmp_path: Path) -> None:
    server_tls, client_tls = tls_contexts(tmp_path, "other.test")
    async with local_server(ok_response, server_tls) as (port, _):
        http = SafeHttpClient(
            policy(allow_cidrs=LOOPBACK_ONLY),
            resolver=FakeDns({"service.test": ["127.0.0.1"]}),
            transport=httpx.AsyncHTTPTransport(verify=client_tls),
        )
        with pytest.raises(DependencyUnavailable) as caught:
            await http.request("GET", f"https://service.test:{port}/")
    assert caught.value.code == "http_call_failed"
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


async def test_the_system_resolver_is_used_by_default() -> None:
    recorder = Recorder()
    http = SafeHttpClient(policy(), transport=recorder.transport)
    error = await refusal(http, "http://localhost:8080/")
    assert error.details["reason"] == "loopback_address"
    assert recorder.requests == []
