"""Access tokens: issue and verify, and every way a token must be refused (401)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.auth.keys import KeyRing, SigningKey, VerificationKey
from shared.auth.rbac import Permission, Role
from shared.auth.tokens import TokenIssuer, TokenVerifier
from shared.errors import Unauthorized

pytestmark = pytest.mark.unit

ISS, AUD = "https://quarry.example", "quarry-api"
SECRET = "an-hs256-secret-of-at-least-32-bytes!"
USER, TENANT = uuid.uuid4(), uuid.uuid4()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def issue(ring: KeyRing, *, clock: Callable[[], float] = time.time, **kw: Any) -> str:
    issuer = TokenIssuer(ring, issuer=kw.pop("iss", ISS), audience=kw.pop("aud", AUD), clock=clock)
    return issuer.issue(user_id=USER, tenant_id=TENANT, role=Role.MEMBER, **kw).token


def refused(ring: KeyRing, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as error:
        TokenVerifier(ring, issuer=ISS, audience=AUD, leeway_s=5).verify(token)
    return error.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def valid_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISS, "aud": AUD, "sub": str(USER), "tid": str(TENANT), "role": "owner",
        "scopes": ["*"], "iat": now, "nbf": now, "exp": now + 900, "jti": "j1",
    }  # fmt: skip
    return {**claims, **overrides}


HS_RING = KeyRing(SigningKey.hs256(SECRET, kid="hs-1"))


def test_a_valid_token_verifies_into_claims_and_a_principal() -> None:
    issuer = TokenIssuer(HS_RING, issuer=ISS, audience=AUD, ttl_s=900)
    issued = issuer.issue(
        user_id=USER, tenant_id=TENANT, role=Role.ADMIN, scopes=["kb:read", "kb:write"]
    )
    claims = TokenVerifier(HS_RING, issuer=ISS, audience=AUD).verify(issued.token)

    assert (claims.user_id, claims.tenant_id, claims.role) == (USER, TENANT, Role.ADMIN)
    assert claims.scopes == {"kb:read", "kb:write"}
    assert claims.jti == issued.jti
    assert issued.expires_in_s == 900
    assert (claims.expires_at - claims.issued_at).total_seconds() == 900
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "HS256", "kid": "hs-1", "typ": "JWT"}
    principal = claims.principal()
    assert principal.kind == "user"
    assert principal.allows(Permission.KB_WRITE)
    assert not principal.allows(Permission.KB_MANAGE)


def test_a_tampered_token_is_refused() -> None:
    header, payload, signature = issue(HS_RING).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "owner"
    forged_payload = b64(json.dumps(claims).encode())
    assert refused(HS_RING, f"{header}.{forged_payload}.{signature}").details == {
        "reason": "signature"
    }
    # Change a character in the middle: the last one carries padding bits that may not matter.
    middle = len(signature) // 2
    changed = "A" if signature[middle] != "A" else "B"
    forged_signature = signature[:middle] + changed + signature[middle + 1 :]
    assert refused(HS_RING, f"{header}.{payload}.{forged_signature}").code == "token_invalid"


def test_an_expired_token_is_refused_as_expired() -> None:
    token = issue(HS_RING, clock=lambda: time.time() - 901 - 10)
    error = refused(HS_RING, token)
    assert error.code == "token_expired"
    assert error.status_code == 401


def test_a_token_within_the_leeway_still_verifies() -> None:
    token = issue(HS_RING, clock=lambda: time.time() - 900 - 2)  # expired 2 s ago, leeway 5 s
    TokenVerifier(HS_RING, issuer=ISS, audience=AUD, leeway_s=5).verify(token)


def test_a_not_yet_valid_token_is_refused() -> None:
    token = issue(HS_RING, clock=lambda: time.time() + 120)
    error = refused(HS_RING, token)
    assert error.code == "token_invalid"
    assert error.details["reason"] == "not_yet_valid"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "another-api"}, "audience"),
        ({"iss": "https://evil.example"}, "issuer"),
    ],
)
def test_wrong_audience_or_issuer_is_refused(overrides: dict[str, Any], reason: str) -> None:
    token = issue(HS_RING, **overrides)
    assert refused(HS_RING, token).details["reason"] == reason


def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = KeyRing(SigningKey.hs256("another-secret-that-is-32-bytes-long", kid="hs-1"))
    assert refused(HS_RING, issue(other)).details["reason"] == "signature"
    unknown_kid = KeyRing(SigningKey.hs256(SECRET, kid="hs-9"))
    assert refused(HS_RING, issue(unknown_kid)).details["reason"] == "unknown_key"


def test_alg_none_is_refused() -> None:
    for alg in ("none", "None", "NONE"):
        token = forge({"alg": alg, "typ": "JWT", "kid": "hs-1"}, valid_claims(), lambda _: b"")
        assert refused(HS_RING, token).details["reason"] == "algorithm"
        unsigned = token.rsplit(".", 1)[0] + "."
        assert refused(HS_RING, unsigned).code == "token_invalid"


def test_hs256_signed_with_the_rsa_public_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """The classic confusion: the attacker knows the public key and uses it as an HMAC secret."""
    ring = KeyRing(SigningKey("rs-1", "RS256", rsa_key))
    assert TokenVerifier(ring, issuer=ISS, audience=AUD).verify(issue(ring)).user_id == USER
    pem = public_pem(rsa_key)
    token = forge(
        {"alg": "HS256", "typ": "JWT", "kid": "rs-1"},
        valid_claims(),
        lambda data: hmac.new(pem, data, hashlib.sha256).digest(),
    )
    assert refused(ring, token).details["reason"] == "algorithm"
    with pytest.raises(ValueError, match="PEM"):
        SigningKey.hs256(pem)  # nor can a public key be configured as an HMAC secret


def test_an_algorithm_swap_between_asymmetric_keys_is_refused(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    rs_ring = KeyRing(SigningKey("shared-kid", "RS256", rsa_key))
    es_ring = KeyRing(SigningKey("shared-kid", "ES256", ec_key))
    assert refused(rs_ring, issue(es_ring)).details["reason"] == "algorithm"
    assert refused(es_ring, issue(rs_ring)).details["reason"] == "algorithm"


def test_rotation_by_kid(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    old = KeyRing(SigningKey("rs-2024", "RS256", rsa_key))
    old_token = issue(old)
    new = old.rotated(SigningKey("es-2025", "ES256", ec_key))
    new_token = issue(new)

    assert jwt.get_unverified_header(new_token)["kid"] == "es-2025"
    verifier = TokenVerifier(new, issuer=ISS, audience=AUD)
    assert verifier.verify(old_token).user_id == USER  # the old key still verifies
    assert verifier.verify(new_token).user_id == USER
    assert refused(old, new_token).details["reason"] == "unknown_key"  # not yet known there
    retired = new.rotated(SigningKey.hs256(SECRET, kid="hs-2026"), keep_previous=1)
    assert retired.kids == ["hs-2026", "es-2025"]
    assert refused(retired, old_token).details["reason"] == "unknown_key"


def test_verification_keys_from_pem_and_the_public_jwks(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = KeyRing(SigningKey.from_private_pem("rs-1", "RS256", private_pem))
    verifier_only = KeyRing(
        SigningKey.hs256(SECRET, kid="hs-1"),
        [VerificationKey.from_public_pem("rs-1", "RS256", public_pem(rsa_key))],
    )
    token = issue(signer)
    assert TokenVerifier(verifier_only, issuer=ISS, audience=AUD).verify(token).user_id == USER

    ring = KeyRing(
        SigningKey("es-1", "ES256", ec_key),
        [VerificationKey("rs-1", "RS256", rsa_key.public_key())],
    )
    jwks = KeyRing(SigningKey.hs256(SECRET, kid="hs"), []).public_jwks()
    assert jwks == {"keys": []}  # an HMAC secret is never published
    keys = {k["kid"]: k for k in ring.public_jwks()["keys"]}
    assert (keys["es-1"]["kty"], keys["es-1"]["alg"]) == ("EC", "ES256")
    assert keys["rs-1"]["kty"] == "RSA"
    assert "d" not in keys["rs-1"]  # never the private part


@pytest.mark.parametrize(
    "claims",
    [
        valid_claims(sub="not-a-uuid"),
        valid_claims(role="superuser"),
        valid_claims(scopes="kb:read"),
        {k: v for k, v in valid_claims().items() if k != "tid"},
        {k: v for k, v in valid_claims().items() if k != "exp"},
        {k: v for k, v in valid_claims().items() if k != "jti"},
    ],
)
def test_tokens_with_missing_or_malformed_claims_are_refused(claims: dict[str, Any]) -> None:
    token = jwt.encode(claims, SECRET.encode(), algorithm="HS256", headers={"kid": "hs-1"})
    assert refused(HS_RING, token).details["reason"] == "claims"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 9000, "Bearer abc.def.ghi"])
def test_garbage_is_refused(token: str) -> None:
    assert refused(HS_RING, token).code == "token_invalid"


def test_a_token_without_kid_is_refused() -> None:
    token = jwt.encode(valid_claims(), SECRET.encode(), algorithm="HS256")
    assert refused(HS_RING, token).details["reason"] == "unknown_key"


@pytest.mark.parametrize(
    "make",
    [
        lambda: SigningKey.hs256("too-short"),
        lambda: SigningKey.hs256("-----BEGIN PUBLIC KEY-----" + "A" * 40),
        lambda: SigningKey.hs256(SECRET, kid="has space"),
        lambda: SigningKey("rs", "RS256", rsa.generate_private_key(65537, 1024)),  # noqa: S505
        lambda: SigningKey("es", "ES256", ec.generate_private_key(ec.SECP384R1())),
        lambda: SigningKey("es", "RS256", ec.generate_private_key(ec.SECP256R1())),
        lambda: SigningKey("hs", "HS512", b"x" * 64),  # type: ignore[arg-type]
        lambda: KeyRing(
            SigningKey.hs256(SECRET, kid="a"), [VerificationKey("a", "HS256", b"y" * 32)]
        ),
    ],
)
def test_unsafe_keys_are_refused_at_configuration(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"key|secret|HS256|curve|algorithm"):
        make()
