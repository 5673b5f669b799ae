"""Blocking JSON calls to the GPU endpoint, whatever carries them: retries and a circuit breaker.

Two transports: plain HTTP to the endpoint's routes (``gpu_endpoint_http``) and SigV4-signed
SageMaker ``invoke_endpoint`` calls (``gpu_endpoint_sagemaker``). Both answer the same way:

Connection errors, timeouts and 5xx answers are retried with jittered exponential backoff
("full jitter": a random wait up to the exponential bound, so clients that failed together do
not retry together) and count as breaker failures. 4xx answers are neither: the endpoint is
healthy and the request is wrong (``InvalidInput``, ``PayloadTooLarge`` for a 413, with the
endpoint's own ``code``). When the breaker is open a call raises ``CircuitOpenError`` (code
``circuit_open``) at once; callers degrade on that code (queries go keyword-only, ingestion
waits ``retry_after_s`` and resumes).

Share one transport between the embedder, reranker and OCR adapters of one endpoint, so they
share its connections and its breaker. Callers run these blocking calls in worker threads.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

# The name of the GPU endpoint's one breaker: the ``endpoint`` dimension of its ``circuit_open``
# metric, which the CDK app's alarm watches.
GPU_ENDPOINT_BREAKER = "gpu_endpoint"
# 5xx codes that say "this will not change if you ask again" (no such model is loaded): not
# retried and not held against the breaker, which would otherwise cut embeddings off as well.
_PERMANENT_SERVER_CODES = frozenset({"model_unavailable"})


class TransientFailure(Exception):
    """The call did not get an answer (timeout, unreachable, throttled): retried, and a breaker
    failure. ``code`` is what the caller sees once the retries are spent."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class EndpointReply:
    """What the endpoint answered: its HTTP status and JSON body (``{}`` if not a JSON object)."""

    status: int
    body: dict[str, Any]


class GpuEndpointTransport(ABC):
    def __init__(
        self,
        *,
        breaker: CircuitBreaker,
        retries: int = 2,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.breaker = breaker
        self._retries = retries
        self._backoff = wait_random_exponential(multiplier=backoff_initial_s, max=backoff_max_s)
        self._sleep = sleep

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The endpoint's JSON answer to ``path`` (``/embed``, ``/rerank``, ``/ocr``), or a
        ``QuarryError``: ``CircuitOpenError``, ``DependencyUnavailable`` once the retries are
        spent, ``InvalidInput`` / ``PayloadTooLarge`` for a 4xx (with the endpoint's code)."""
        retrying = Retrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=self._backoff,
            retry=retry_if_exception_type(TransientFailure),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, path, payload)
        except TransientFailure as exc:
            raise DependencyUnavailable(
                f"the GPU endpoint failed on {path}: {exc}",
                code=exc.code,
                details={"attempts": self._retries + 1},
            ) from exc

    def close(self) -> None:  # noqa: B027 - nothing to release unless a transport holds a pool
        """Release the transport's connections."""

    @abstractmethod
    def _send(self, path: str, payload: dict[str, Any]) -> EndpointReply:
        """One call; raises ``TransientFailure`` when no answer came back."""

    def _attempt(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.breaker.allow()
        try:
            reply = self._send(path, payload)
        except BaseException:
            self.breaker.record_failure()  # settle the attempt, whatever went wrong
            raise
        code = str(reply.body.get("code") or "")
        if reply.status >= 500 and code not in _PERMANENT_SERVER_CODES:
            self.breaker.record_failure()
            raise TransientFailure(f"HTTP {reply.status} {code}", code or "model_unavailable")
        self.breaker.record_success()
        if 200 <= reply.status < 300:
            return reply.body
        raise _client_error(reply.status, code, str(reply.body.get("message") or ""), path)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("GPU endpoint attempt %d failed (%s); retrying", state.attempt_number, error)


def _client_error(status: int, code: str, message: str, path: str) -> QuarryError:
    text = f"the GPU endpoint refused {path} (HTTP {status}): {message}"
    if status == 413:
        return PayloadTooLarge(text, code=code or None)
    if status >= 500:  # a permanent server code
        return DependencyUnavailable(text, code=code or None)
    return InvalidInput(text, code=code or None)
