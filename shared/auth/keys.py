"""Signing keys for access tokens and the key ring that rotates them by ``kid``.

Every key is bound to exactly one algorithm. HS256 secrets must be at least 32 bytes and may not
look like a PEM or SSH key: a public key used as an HMAC secret is the classic algorithm-confusion
attack (sign HS256 with the server's RS256 public key). RSA keys are at least 2048 bits; ES256
keys are on P-256.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

if TYPE_CHECKING:
    from shared.settings import AuthSettings

Algorithm = Literal["HS256", "RS256", "ES256"]
MIN_HMAC_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
_KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_KEY_LIKE = (b"-----BEGIN", b"ssh-rsa", b"ssh-ed25519", b"ecdsa-sha2-")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    algorithm: Algorithm
    key: bytes | PublicKey  # the HMAC secret for HS256

    def __post_init__(self) -> None:
        _check_kid(self.kid)
        _check_key(self.algorithm, self.key)

    @classmethod
    def from_public_pem(cls, kid: str, algorithm: Algorithm, pem: str | bytes) -> VerificationKey:
        key = load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ValueError(f"key {kid!r}: only RSA and EC public keys are supported")
        return cls(kid, algorithm, key)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: Algorithm
    key: bytes | PrivateKey  # the HMAC secret for HS256

    def __post_init__(self) -> None:
        _check_kid(self.kid)
        _check_key(self.algorithm, self.key)

    @classmethod
    def hs256(cls, secret: str | bytes, kid: str = "hs256") -> SigningKey:
        return cls(kid, "HS256", secret.encode() if isinstance(secret, str) else secret)

    @classmethod
    def from_private_pem(
        cls, kid: str, algorithm: Algorithm, pem: str | bytes, password: bytes | None = None
    ) -> SigningKey:
        key = load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"key {kid!r}: only RSA and EC private keys are supported")
        return cls(kid, algorithm, key)

    def verification_key(self) -> VerificationKey:
        if isinstance(self.key, bytes):
            return VerificationKey(self.kid, self.algorithm, self.key)
        return VerificationKey(self.kid, self.algorithm, self.key.public_key())


class KeyRing:
    """The active signing key plus older keys that still verify tokens they signed. Rotate by
    making a new key active and keeping the old one here for at least one access-token lifetime."""

    def __init__(self, active: SigningKey, previous: Iterable[VerificationKey] = ()) -> None:
        self.active = active
        self._by_kid: dict[str, VerificationKey] = {active.kid: active.verification_key()}
        for key in previous:
            if key.kid in self._by_kid:
                raise ValueError(f"duplicate key id {key.kid!r} in the key ring")
            self._by_kid[key.kid] = key

    def verification_key(self, kid: str) -> VerificationKey | None:
        return self._by_kid.get(kid)

    @property
    def kids(self) -> list[str]:
        return list(self._by_kid)

    def rotated(self, new_active: SigningKey, *, keep_previous: int = 1) -> KeyRing:
        """A ring signing with ``new_active`` that still verifies the newest ``keep_previous``
        keys of this one (the current active key first)."""
        older = [k for kid, k in self._by_kid.items() if kid != new_active.kid]
        return KeyRing(new_active, older[:keep_previous])

    def public_jwks(self) -> dict[str, Any]:
        """The asymmetric verification keys as a JWK Set (``/.well-known/jwks.json``, e.g. for an
        API Gateway JWT authorizer). HMAC secrets are never published."""
        keys: list[dict[str, Any]] = []
        for vk in self._by_kid.values():
            if isinstance(vk.key, bytes):
                continue
            if isinstance(vk.key, rsa.RSAPublicKey):
                jwk = json.loads(RSAAlgorithm.to_jwk(vk.key))
            else:
                jwk = json.loads(ECAlgorithm.to_jwk(vk.key))
            keys.append({**jwk, "kid": vk.kid, "alg": vk.algorithm, "use": "sig"})
        return {"keys": keys}


def _check_kid(kid: str) -> None:
    if not _KID.match(kid):
        raise ValueError(f"invalid key id {kid!r}: 1-64 characters of A-Z a-z 0-9 . _ -")


def _check_key(algorithm: Algorithm, key: object) -> None:
    if algorithm == "HS256":
        if not isinstance(key, bytes):
            raise ValueError("an HS256 key is a secret (bytes)")
        if len(key) < MIN_HMAC_SECRET_BYTES:
            raise ValueError(f"an HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
        if key.lstrip().startswith(_KEY_LIKE):
            raise ValueError("an HS256 secret must not be a PEM or SSH key")
    elif algorithm == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            raise ValueError("an RS256 key must be an RSA key")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RS256 key must have at least {MIN_RSA_BITS} bits")
    elif algorithm == "ES256":
        if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            raise ValueError("an ES256 key must be an EC key")
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("an ES256 key must be on the P-256 curve")
    else:
        raise ValueError(f"unsupported algorithm {algorithm!r}")


def key_ring_from_settings(auth: AuthSettings) -> KeyRing:
    """The active key (``jwt_algorithm``: the HS256 secret or the PEM private key) under
    ``jwt_key_id``, plus ``jwt_previous_keys`` that still verify."""
    if auth.jwt_algorithm == "HS256":
        active = SigningKey.hs256(auth.jwt_secret.get_secret_value(), kid=auth.jwt_key_id)
    else:
        if auth.jwt_private_key is None:
            raise ValueError(f"{auth.jwt_algorithm} needs auth.jwt_private_key")
        active = SigningKey.from_private_pem(
            auth.jwt_key_id, auth.jwt_algorithm, auth.jwt_private_key.get_secret_value()
        )
    previous: list[VerificationKey] = []
    for old in auth.jwt_previous_keys:
        if old.algorithm == "HS256":
            if old.secret is None:
                raise ValueError(f"previous key {old.kid!r}: HS256 needs its secret")
            previous.append(
                VerificationKey(old.kid, "HS256", old.secret.get_secret_value().encode())
            )
        else:
            if old.public_key_pem is None:
                raise ValueError(f"previous key {old.kid!r}: {old.algorithm} needs public_key_pem")
            previous.append(
                VerificationKey.from_public_pem(old.kid, old.algorithm, old.public_key_pem)
            )
    return KeyRing(active, previous)
