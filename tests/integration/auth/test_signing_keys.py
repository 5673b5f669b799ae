"""Asymmetric access tokens from settings, the published JWKS, and rotation by ``kid``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from functions.local_app import create_local_app
from shared.auth.keys import KeyRing, SigningKey
from shared.auth.rbac import Role
from shared.auth.tokens import TokenIssuer
from shared.settings import Settings
from tests.fixtures.auth import bearer, sign_up

pytestmark = pytest.mark.integration

OLD_SECRET = "the-retired-hs256-secret-of-at-least-32-bytes"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def es256_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_es256_tokens_verify_and_retired_keys_still_do(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        auth={
            "jwt_algorithm": "ES256",
            "jwt_private_key": es256_pem(),
            "jwt_key_id": "2026-11",
            "jwt_previous_keys": [{"kid": "2026-10", "algorithm": "HS256", "secret": OLD_SECRET}],
        }
    )
    with TestClient(create_local_app(settings)) as client:
        headers = sign_up(client)
        token = headers["Authorization"].removeprefix("Bearer ")
        assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "2026-11", "typ": "JWT"}
        me = client.get("/v1/auth/me", headers=headers).json()
        jwks = client.get("/.well-known/jwks.json").json()["keys"]
        assert [(k["kid"], k["alg"], k["kty"]) for k in jwks] == [("2026-11", "ES256", "EC")]
        assert all("d" not in k for k in jwks)  # public halves only

        # A token the retired HS256 key signed before the rotation is still accepted...
        retired = TokenIssuer(
            KeyRing(SigningKey.hs256(OLD_SECRET, kid="2026-10")),
            issuer=settings.auth.jwt_issuer,
            audience=settings.auth.jwt_audience,
        ).issue(
            user_id=uuid.UUID(me["user"]["id"]),
            tenant_id=uuid.UUID(me["tenant_id"]),
            role=Role.OWNER,
        )
        assert client.get("/v1/kbs", headers=bearer(retired.token)).status_code == 200
        # ...but HS256 with the public key of the ES256 one (algorithm confusion) is not.
        public_pem = jwt.algorithms.ECAlgorithm.from_jwk(jwks[0]).public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # (PyJWT refuses to make such a token, so it is signed by hand.)
        payload_b64 = token.split(".")[1]
        forged_header = b64url(json.dumps({"alg": "HS256", "kid": "2026-11"}).encode())
        signing_input = f"{forged_header}.{payload_b64}".encode()
        signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
        confused = f"{forged_header}.{payload_b64}.{b64url(signature)}"
        assert client.get("/v1/kbs", headers=bearer(confused)).status_code == 401
