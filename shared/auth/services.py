"""The auth part of the composition root (``shared.container``): sessions, access tokens, API
keys, users, provider secrets and rate limits, built from settings on first use."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from shared.db.engine import Database
from shared.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from shared.auth.api_keys import ApiKeyService
    from shared.auth.authenticator import Authenticator
    from shared.auth.keys import KeyRing
    from shared.auth.passwords import PasswordHasher
    from shared.auth.rate_limit import RateLimiter
    from shared.auth.secrets import ProviderSecrets
    from shared.auth.sessions import SessionService
    from shared.auth.tokens import TokenIssuer, TokenVerifier
    from shared.auth.users import UserService
    from shared.db.auth_repository import AuthRepository


class AuthServices:
    def __init__(
        self, settings: Settings, database: Database, *, redis: Callable[[], Redis | None]
    ) -> None:
        self.settings = settings
        self.database = database
        self._redis = redis  # the container's client, made only if a rate limiter needs it

    @cached_property
    def repository(self) -> AuthRepository:
        from shared.db.auth_repository import AuthRepository

        return AuthRepository(self.database)

    @cached_property
    def key_ring(self) -> KeyRing:
        from shared.auth.keys import key_ring_from_settings

        return key_ring_from_settings(self.settings.auth)

    @cached_property
    def token_issuer(self) -> TokenIssuer:
        from shared.auth.tokens import TokenIssuer

        auth = self.settings.auth
        return TokenIssuer(
            self.key_ring, issuer=auth.jwt_issuer, audience=auth.jwt_audience,
            ttl_s=auth.access_token_ttl_s,
        )  # fmt: skip

    @cached_property
    def token_verifier(self) -> TokenVerifier:
        from shared.auth.tokens import TokenVerifier

        auth = self.settings.auth
        return TokenVerifier(
            self.key_ring, issuer=auth.jwt_issuer, audience=auth.jwt_audience,
            leeway_s=auth.jwt_leeway_s,
        )  # fmt: skip

    @cached_property
    def password_hasher(self) -> PasswordHasher:
        from shared.auth.passwords import PasswordHasher

        auth = self.settings.auth
        return PasswordHasher(
            time_cost=auth.password_time_cost,
            memory_cost_kib=auth.password_memory_kib,
            parallelism=auth.password_parallelism,
        )

    @cached_property
    def sessions(self) -> SessionService:
        from shared.auth.refresh import RefreshTokenService
        from shared.auth.sessions import SessionService

        refresh = RefreshTokenService(
            self.repository,
            self.repository,
            ttl_s=self.settings.auth.refresh_token_ttl_s,
        )
        return SessionService(
            self.repository,
            self.password_hasher,
            self.token_issuer,
            refresh,
            self.repository,
        )

    @cached_property
    def api_keys(self) -> ApiKeyService:
        from shared.auth.api_keys import ApiKeyService

        pepper = self.settings.auth.api_key_pepper.get_secret_value().encode()
        return ApiKeyService(self.repository, self.repository, pepper=pepper)

    @cached_property
    def authenticator(self) -> Authenticator:
        from shared.auth.authenticator import Authenticator

        return Authenticator(self.token_verifier, self.api_keys)

    @cached_property
    def users(self) -> UserService:
        from shared.auth.users import UserService

        return UserService(
            self.repository,
            self.password_hasher,
            self.sessions,
            self.repository,
            allow_registration=self.settings.auth.allow_registration,
        )

    @cached_property
    def provider_secrets(self) -> ProviderSecrets:
        from shared.auth.secrets import ProviderSecrets
        from shared.db.secret_repository import SecretRepository

        auth = self.settings.auth
        cipher: Any
        if auth.secrets_cipher == "kms":
            from shared.adapters.kms_envelope_cipher import KmsEnvelopeCipher

            assert auth.kms_key_id is not None  # checked by the settings model
            cipher = KmsEnvelopeCipher(auth.kms_key_id, region=self.settings.aws.region)
        else:
            from shared.adapters.local_key_file_cipher import LocalKeyFileCipher

            cipher = LocalKeyFileCipher(
                auth.secrets_key_file or self.settings.data_dir / "secrets.key"
            )
        return ProviderSecrets(SecretRepository(self.database), cipher, self.repository)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        from shared.auth.rate_limit import FallbackRateLimiter, InProcessRateLimiter

        local = InProcessRateLimiter()
        redis = self._redis()
        if redis is None:
            return local
        from shared.adapters.redis_rate_limiter import RedisRateLimiter

        return FallbackRateLimiter(RedisRateLimiter(redis), local)
