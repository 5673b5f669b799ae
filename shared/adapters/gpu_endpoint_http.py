"""Blocking JSON-over-HTTP calls to the GPU endpoint: timeouts, retries, a circuit breaker.

Connection errors, timeouts and 5xx answers are retried with jittered exponential backoff
("full jitter": a random wait up to the exponential bound, so clients that failed together do
not retry together) and count as breaker failures. 4xx answers are neither: the endpoint is
healthy and the request is wrong. When the breaker is open a call raises ``CircuitOpenError``
(code ``circuit_open``) at once; callers degrade on that code (queries go keyword-only, ingestion
waits ``retry_after_s`` and resumes).

Share one ``GpuEndpointHttp`` between the embedder, reranker and OCR adapters of one endpoint, so
they share its connection pool and its breaker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from shared.adapters.circuit_breaker import CircuitBreaker
from shared.errors import DependencyUnavailable, InvalidInput, PayloadTooLarge, QuarryError

log = logging.getLogger(__name__)

# 5xx codes that say "this will not change if you ask again" (no such model is loaded): not
# retried and not held against the breaker, which would otherwise cut embeddings off as well.
_PERMANENT_SERVER_CODES = frozenset({"model_unavailable"})


class _Transient(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class GpuEndpointHttp:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        retries: int = 2,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 2.0,
        breaker: CircuitBreaker | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.breaker = breaker or CircuitBreaker(f"gpu endpoint {self.base_url}")
        self._retries = retries
        self._backoff = wait_random_exponential(multiplier=backoff_initial_s, max=backoff_max_s)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
            transport=transport,
        )

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The endpoint's JSON answer, or a ``QuarryError``: ``CircuitOpenError``,
        ``DependencyUnavailable`` once the retries are spent, ``InvalidInput`` /
        ``PayloadTooLarge`` for a 4xx (with the endpoint's own ``code``)."""
        retrying = Retrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=self._backoff,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, path, payload)
        except _Transient as exc:
            raise DependencyUnavailable(
                f"the GPU endpoint failed on {path}: {exc}",
                code=exc.code,
                details={"attempts": self._retries + 1},
            ) from exc

    def close(self) -> None:
        self._http.close()

    def _attempt(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.breaker.allow()
        try:
            response = self._http.post(path, json=payload)
        except httpx.TimeoutException as exc:
            self.breaker.record_failure()
            raise _Transient(f"timed out ({type(exc).__name__})", "model_timeout") from exc
        except httpx.TransportError as exc:
            self.breaker.record_failure()
            raise _Transient(f"unreachable ({exc!r})", "model_unavailable") from exc
        except BaseException:
            self.breaker.record_failure()  # settle the attempt, whatever went wrong
            raise
        body = _json_or_empty(response)
        code = str(body.get("code") or "")
        if response.status_code >= 500 and code not in _PERMANENT_SERVER_CODES:
            self.breaker.record_failure()
            raise _Transient(f"HTTP {response.status_code} {code}", code or "model_unavailable")
        self.breaker.record_success()
        if response.is_success:
            return body
        raise _client_error(response.status_code, code, str(body.get("message") or ""), path)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("GPU endpoint attempt %d failed (%s); retrying", state.attempt_number, error)


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _client_error(status: int, code: str, message: str, path: str) -> QuarryError:
    text = f"the GPU endpoint refused {path} (HTTP {status}): {message}"
    if status == 413:
        return PayloadTooLarge(text, code=code or None)
    if status >= 500:  # a permanent server code
        return DependencyUnavailable(text, code=code or None)
    return InvalidInput(text, code=code or None)


def as_http(endpoint: GpuEndpointHttp | str) -> GpuEndpointHttp:
    """Adapters take a shared ``GpuEndpointHttp``, or a URL for one of their own."""
    return endpoint if isinstance(endpoint, GpuEndpointHttp) else GpuEndpointHttp(endpoint)
