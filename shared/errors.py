"""Domain errors. Each carries a stable machine-readable ``code`` and the HTTP status it maps to.

Domain code raises these; the HTTP layer (``functions.common.errors``) is the one place that turns
them into JSON responses. Adapters translate SDK errors into these rather than leaking them.
"""

from __future__ import annotations

from typing import Any


class QuarryError(Exception):
    """Base class of every error Quarry reports to a caller."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}


class InvalidInput(QuarryError):
    status_code = 422
    code = "invalid_input"


class NotFound(QuarryError):
    status_code = 404
    code = "not_found"


class Conflict(QuarryError):
    status_code = 409
    code = "conflict"


class Unauthorized(QuarryError):
    status_code = 401
    code = "unauthorized"


class Forbidden(QuarryError):
    status_code = 403
    code = "forbidden"


class PayloadTooLarge(QuarryError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(QuarryError):
    status_code = 415
    code = "unsupported_type"


class RateLimited(QuarryError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s


class DependencyUnavailable(QuarryError):
    """A backing service (database, Redis, Milvus, model endpoint) did not answer."""

    status_code = 503
    code = "dependency_unavailable"


class ConfigurationError(QuarryError):
    """Settings that cannot work together; raised at start-up, never per request."""

    code = "configuration_error"
