"""The security acceptance suite: the local app on the real PostgreSQL and Redis servers.

Unauthenticated calls, forged tokens, roles, tenant isolation, refresh-token theft, API-key
revocation and expiry, rate limits, brute-force login, and encrypted provider secrets.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from functions.local_app import create_local_app
from shared.settings import Settings
from tests.fixtures.auth import PASSWORD, bearer, register, sign_in, sign_up

pytestmark = pytest.mark.integration

QUERY_LIMIT = 6
LOGIN_LIMIT = 4
PUBLIC = {
    "/health",
    "/health/ready",
    "/metrics",
    "/v1/auth/register",
    "/v1/auth/token",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/.well-known/jwks.json",
}
DOC = b"The glacier above Zermatt retreated 300 metres since 1990, the survey found."


@pytest.fixture
def settings(make_settings: Callable[..., Settings], postgres_url: str, redis_url: str) -> Settings:
    return make_settings(
        db={"url": postgres_url},
        cache={"redis_url": redis_url},
        auth={"query_rate_limit": QUERY_LIMIT, "login_rate_limit": LOGIN_LIMIT},
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_local_app(settings)) as test_client:
        yield test_client


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def new_tenant(client: TestClient) -> tuple[dict[str, str], str]:
    """A fresh tenant's owner: (Authorization header, email)."""
    email = f"{unique('owner')}@example.com"
    return sign_up(client, email=email, tenant=unique("tenant")), email


def concrete(path: str) -> str:
    return re.sub(
        r"\{(\w+)\}",
        lambda m: str(uuid.uuid4()) if m.group(1).endswith("id") else "x",
        path,
    )


def test_every_non_public_route_needs_a_principal(client: TestClient) -> None:
    app: Any = client.app
    checked = 0
    for path, operations in app.openapi()["paths"].items():
        if path in PUBLIC or path.endswith("/health"):
            continue
        for method in operations:
            response = client.request(method.upper(), concrete(path), json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["code"] == "unauthenticated"
            checked += 1
    assert checked >= 30


def forge(claims: dict[str, Any], key: Any, algorithm: str, kid: str = "k1") -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def test_forged_and_stale_tokens_are_refused(client: TestClient, settings: Settings) -> None:
    headers, _ = new_tenant(client)
    token = headers["Authorization"].removeprefix("Bearer ")
    assert client.get("/v1/kbs", headers=headers).status_code == 200
    claims = jwt.decode(token, options={"verify_signature": False})
    secret = settings.auth.jwt_secret.get_secret_value()
    now = int(time.time())
    header_b64, payload_b64, signature = token.split(".")
    tampered_payload = base64.urlsafe_b64encode(
        json.dumps({**claims, "role": "owner", "tid": str(uuid.uuid4())}).encode()
    ).rstrip(b"=")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"k1"}').rstrip(b"=")
    forged = {
        "tampered": f"{header_b64}.{tampered_payload.decode()}.{signature}",
        "expired": forge(
            {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, secret, "HS256"
        ),
        "alg_none": f"{none_header.decode()}.{payload_b64}.",
        "wrong_audience": forge({**claims, "aud": "someone-else"}, secret, "HS256"),
        "wrong_issuer": forge({**claims, "iss": "evil"}, secret, "HS256"),
        "wrong_key": forge(claims, "another-secret-of-at-least-32-bytes!!", "HS256"),
        "unknown_kid": forge(claims, secret, "HS256", kid="k9"),
        "es256_swap": forge(claims, ec.generate_private_key(ec.SECP256R1()), "ES256"),
        "not_yet_valid": forge({**claims, "nbf": now + 3600}, secret, "HS256"),
    }
    for name, bad in forged.items():
        response = client.get("/v1/kbs", headers=bearer(bad))
        assert response.status_code == 401, name
        expected = "token_expired" if name == "expired" else "token_invalid"
        assert response.json()["code"] == expected, name


def test_a_viewer_reads_but_cannot_write(client: TestClient) -> None:
    owner, _ = new_tenant(client)
    assert client.post("/v1/kbs", json={"name": "alps"}, headers=owner).status_code == 201
    email = f"{unique('viewer')}@example.com"
    created = client.post(
        "/v1/users", json={"email": email, "password": PASSWORD, "role": "viewer"}, headers=owner
    )
    assert created.status_code == 201, created.text
    viewer = bearer(sign_in(client, email)["access_token"])
    assert client.get("/v1/kbs/alps", headers=viewer).status_code == 200
    files = [("files", ("a.txt", DOC, "text/plain"))]
    for response in (
        client.post("/v1/kbs", json={"name": "other"}, headers=viewer),
        client.post("/v1/kbs/alps/documents", files=files, headers=viewer),
        client.delete("/v1/kbs/alps", headers=viewer),
        client.post("/v1/api-keys", json={"name": "k"}, headers=viewer),
        client.get("/v1/audit", headers=viewer),
        client.patch(f"/v1/users/{uuid.uuid4()}", json={"role": "owner"}, headers=viewer),
    ):
        assert response.status_code == 403, response.request.url
        assert response.json()["code"] == "forbidden"


def test_tenants_see_only_their_own_resources(client: TestClient) -> None:
    alice, _ = new_tenant(client)
    bob, _ = new_tenant(client)
    assert client.post("/v1/kbs", json={"name": "shared-name"}, headers=bob).status_code == 201
    files = [("files", ("glacier.txt", DOC, "text/plain"))]
    upload = client.post("/v1/kbs/shared-name/documents?wait=true", files=files, headers=bob)
    assert upload.status_code == 200, upload.text
    doc_id = upload.json()["documents"][0]["id"]
    run_id = upload.json()["run"]["id"]
    bob_me = client.get("/v1/auth/me", headers=bob).json()
    bob_key = client.post("/v1/api-keys", json={"name": "k"}, headers=bob).json()

    for path in (
        "/v1/kbs/shared-name",
        f"/v1/kbs/shared-name/documents/{doc_id}",
        f"/v1/kbs/shared-name/runs/{run_id}",
        f"/v1/users/{bob_me['user']['id']}",
    ):
        response = client.get(path, headers=alice)
        assert response.status_code == 404, path
    query = client.post("/v1/kbs/shared-name/query", json={"query": "glacier"}, headers=alice)
    assert query.status_code == 404
    assert client.delete(f"/v1/api-keys/{bob_key['id']}", headers=alice).status_code == 404
    # Alice's own KB of the same name is hers alone: empty, and Bob's still answers.
    assert client.post("/v1/kbs", json={"name": "shared-name"}, headers=alice).status_code == 201
    mine = client.get("/v1/kbs/shared-name/documents", headers=alice).json()
    assert mine["items"] == []
    hits = client.post(
        "/v1/kbs/shared-name/query", json={"query": "glacier Zermatt"}, headers=alice
    )
    assert hits.status_code == 200
    assert hits.json()["citations"] == []
    theirs = client.post(
        "/v1/kbs/shared-name/query", json={"query": "glacier Zermatt"}, headers=bob
    )
    assert theirs.json()["citations"]
    bob_by_key = client.get("/v1/auth/me", headers={"X-API-Key": bob_key["key"]}).json()
    assert (bob_by_key["kind"], bob_by_key["tenant_id"]) == ("api_key", bob_me["tenant_id"])


def test_refresh_reuse_revokes_the_whole_family(client: TestClient) -> None:
    email = f"{unique('user')}@example.com"
    register(client, email=email, tenant=unique("tenant"))
    first = sign_in(client, email)
    second = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    # The first token again: theft detected; the thief's and the victim's sessions both end.
    reuse = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert (reuse.status_code, reuse.json()["code"]) == (401, "refresh_reuse")
    victim = client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert victim.status_code == 401
    owner = bearer(sign_in(client, email)["access_token"])
    actions = [e["action"] for e in client.get("/v1/audit", headers=owner).json()["items"]]
    assert "refresh_token.reuse" in actions
    assert "auth.refresh" in actions


def test_logout_ends_the_session(client: TestClient) -> None:
    email = f"{unique('user')}@example.com"
    register(client, email=email, tenant=unique("tenant"))
    tokens = sign_in(client, email)
    assert (
        client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}).status_code
        == 204
    )
    again = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401


def test_revoked_and_expired_api_keys_are_refused(client: TestClient, postgres_url: str) -> None:
    owner, _ = new_tenant(client)
    created = client.post(
        "/v1/api-keys", json={"name": "ci", "scopes": ["kb:read"]}, headers=owner
    ).json()
    assert created["key"].startswith(f"qk_{created['prefix']}_")
    key = {"X-API-Key": created["key"]}
    assert client.get("/v1/kbs", headers=key).status_code == 200
    # Scopes narrow the key: kb:read cannot write.
    assert client.post("/v1/kbs", json={"name": "nope"}, headers=key).status_code == 403
    listed = client.get("/v1/api-keys", headers=owner).json()["items"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    assert client.delete(f"/v1/api-keys/{created['id']}", headers=owner).status_code == 204
    revoked = client.get("/v1/kbs", headers=key)
    assert (revoked.status_code, revoked.json()["code"]) == (401, "api_key_revoked")

    expiring = client.post(
        "/v1/api-keys", json={"name": "short", "expires_in_days": 1}, headers=owner
    ).json()
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = %s",
            (expiring["id"],),
        )
    expired = client.get("/v1/kbs", headers=bearer(expiring["key"]))
    assert (expired.status_code, expired.json()["code"]) == (401, "api_key_expired")


def test_the_query_rate_limit_answers_429_after_exactly_the_limit(client: TestClient) -> None:
    owner, _ = new_tenant(client)
    assert client.post("/v1/kbs", json={"name": "alps"}, headers=owner).status_code == 201
    statuses = [
        client.post("/v1/kbs/alps/query", json={"query": "glacier"}, headers=owner).status_code
        for _ in range(QUERY_LIMIT + 1)
    ]
    assert statuses == [200] * QUERY_LIMIT + [429]
    limited = client.post("/v1/kbs/alps/query", json={"query": "glacier"}, headers=owner)
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Other routes have their own budget.
    assert client.get("/v1/kbs", headers=owner).status_code == 200


def test_brute_force_login_is_throttled(client: TestClient) -> None:
    email = f"{unique('user')}@example.com"
    register(client, email=email, tenant=unique("tenant"))
    wrong = {"email": email, "password": "not the password at all"}
    statuses = [client.post("/v1/auth/token", json=wrong).status_code for _ in range(LOGIN_LIMIT)]
    assert statuses == [401] * LOGIN_LIMIT
    # Even the right password is refused now, for this email from this address.
    right = client.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert right.status_code == 429
    assert "Retry-After" in right.headers
    owner_view = client.post(
        "/v1/auth/token", json={"email": "someone-else@example.com", "password": "x"}
    )
    assert owner_view.status_code == 401  # another account is not locked out by this one


def test_provider_secrets_are_stored_encrypted_and_never_returned(
    client: TestClient, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner, _ = new_tenant(client)
    plaintext = f"sk-live-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    put = client.put("/v1/secrets/openai", json={"value": plaintext}, headers=owner)
    assert put.status_code == 200
    assert plaintext not in put.text
    listed = client.get("/v1/secrets", headers=owner)
    assert [s["name"] for s in listed.json()["items"]] == ["openai"]
    assert plaintext not in listed.text
    me = client.get("/v1/auth/me", headers=owner).json()
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn:
        row = conn.execute(
            "SELECT ciphertext FROM provider_secrets WHERE tenant_id = %s AND name = 'openai'",
            (me["tenant_id"],),
        ).fetchone()
    assert row is not None
    assert plaintext.encode() not in bytes(row[0])
    assert plaintext not in caplog.text
    assert client.delete("/v1/secrets/openai", headers=owner).status_code == 204
    audit = client.get("/v1/audit", headers=owner).json()["items"]
    assert [e["action"] for e in audit][:2] == ["secret.delete", "secret.put"]
    assert plaintext not in json.dumps(audit)


def test_the_audit_log_is_per_tenant_and_pages(client: TestClient) -> None:
    owner, email = new_tenant(client)
    for n in range(3):
        client.post("/v1/api-keys", json={"name": f"k{n}"}, headers=owner)
    first = client.get("/v1/audit?limit=2", headers=owner).json()
    assert len(first["items"]) == 2
    assert first["next_before_id"] is not None
    rest = client.get(f"/v1/audit?limit=50&before_id={first['next_before_id']}", headers=owner)
    actions = [e["action"] for e in first["items"] + rest.json()["items"]]
    assert actions.count("api_key.create") == 3
    assert "tenant.register" in actions
    assert "auth.login" in actions
    other, _ = new_tenant(client)
    theirs = client.get("/v1/audit", headers=other).json()["items"]
    assert all(e["action"] != "api_key.create" for e in theirs)
    assert email  # the tenant's own entries name principals by id, never by password


def test_bodies_and_fields_are_bounded(client: TestClient, settings: Settings) -> None:
    too_long = client.post(
        "/v1/auth/register",
        json={"email": "a" * 400 + "@example.com", "password": PASSWORD, "tenant_name": "t"},
    )
    assert too_long.status_code == 422
    weak = client.post(
        "/v1/auth/register",
        json={"email": "weak@example.com", "password": "short", "tenant_name": unique("t")},
    )
    assert (weak.status_code, weak.json()["code"]) == (422, "weak_password")
    huge = client.post(
        "/v1/auth/token",
        content=b"{" + b" " * (settings.server.max_body_bytes + 1) + b"}",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    # CORS is off unless an allow-list is configured.
    preflight = client.options(
        "/v1/kbs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def add_user(client: TestClient, owner: dict[str, str], role: str) -> tuple[str, dict[str, str]]:
    email = f"{unique(role)}@example.com"
    created = client.post(
        "/v1/users", json={"email": email, "password": PASSWORD, "role": role}, headers=owner
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], bearer(sign_in(client, email)["access_token"])


def test_restricted_kbs_follow_their_grants(client: TestClient) -> None:
    owner, _ = new_tenant(client)
    for name in ("secret", "open"):
        assert client.post("/v1/kbs", json={"name": name}, headers=owner).status_code == 201
    kb_admin_id, kb_admin = add_user(client, owner, "member")
    _, outsider = add_user(client, owner, "member")
    writer_id, writer = add_user(client, owner, "viewer")
    grants = [{"user_id": kb_admin_id, "level": "admin"}, {"user_id": writer_id, "level": "write"}]
    access = client.put(
        "/v1/kbs/secret/access", json={"restricted": True, "grants": grants}, headers=owner
    )
    assert access.status_code == 200, access.text
    assert access.json()["restricted"] is True

    # Without a grant the KB does not exist for a member.
    assert [k["name"] for k in client.get("/v1/kbs", headers=outsider).json()["items"]] == ["open"]
    assert client.get("/v1/kbs/secret", headers=outsider).status_code == 404
    asked = client.post("/v1/kbs/secret/query", json={"query": "x"}, headers=outsider)
    assert asked.status_code == 404
    # The grant replaces the role on this KB: a member administers it, a viewer writes to it...
    assert (
        client.patch("/v1/kbs/secret", json={"description": "mine"}, headers=kb_admin).status_code
        == 200
    )
    files = [("files", ("a.txt", DOC, "text/plain"))]
    assert client.post("/v1/kbs/secret/documents", files=files, headers=writer).status_code == 202
    # ...but no further: a write grant does not delete the KB, and no grant creates KBs.
    refused = client.delete("/v1/kbs/secret", headers=writer)
    assert (refused.status_code, refused.json()["code"]) == (403, "kb_access_denied")
    assert client.post("/v1/kbs", json={"name": "new"}, headers=kb_admin).status_code == 403
    unknown = client.put(
        "/v1/kbs/secret/access",
        json={"restricted": True, "grants": [{"user_id": str(uuid.uuid4()), "level": "read"}]},
        headers=owner,
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "user_not_found")
    opened = client.put("/v1/kbs/secret/access", json={"restricted": False}, headers=owner)
    assert opened.json() == {"restricted": False, "grants": []}
    assert client.get("/v1/kbs/secret", headers=outsider).status_code == 200
    actions = [e["action"] for e in client.get("/v1/audit", headers=owner).json()["items"]]
    assert actions.count("kb.access") == 2


def test_workflow_runs_act_for_their_starter(client: TestClient) -> None:
    owner, _ = new_tenant(client)
    assert client.post("/v1/kbs", json={"name": "secret"}, headers=owner).status_code == 201
    restricted = client.put("/v1/kbs/secret/access", json={"restricted": True}, headers=owner)
    assert restricted.status_code == 200
    _, member = add_user(client, owner, "member")
    definition = {
        "name": "peek",
        "input": {"q": {"type": "string"}},
        "nodes": [{"id": "search", "type": "retrieve", "kb": "secret", "query": "{{ input.q }}"}],
    }
    assert client.post("/v1/workflows", json=definition, headers=member).status_code == 201
    start = {"input": {"q": "salaries"}, "wait": True}
    peeked = client.post("/v1/workflows/peek/runs", json=start, headers=member).json()
    assert (peeked["status"], peeked["error_code"]) == ("failed", "kb_not_found")
    allowed = client.post("/v1/workflows/peek/runs", json=start, headers=owner).json()
    assert allowed["status"] == "succeeded"
    # Another tenant cannot read, decide or resume this tenant's runs.
    stranger, _ = new_tenant(client)
    for method, path in (
        ("GET", f"/v1/workflow-runs/{allowed['id']}"),
        ("POST", f"/v1/workflow-runs/{peeked['id']}/resume"),
        ("POST", f"/v1/workflow-runs/{peeked['id']}/cancel"),
        ("GET", "/v1/workflows/peek"),
    ):
        assert client.request(method, path, json={}, headers=stranger).status_code == 404, path
