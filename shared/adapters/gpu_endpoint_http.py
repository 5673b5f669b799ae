"""The GPU endpoint over plain HTTP (``POST /embed``, ``/rerank``, ``/ocr``): the transport of a
locally run or self-hosted endpoint. Timeouts, retries and the circuit breaker: see
``gpu_endpoint_transport``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from shared.adapters.circuit_breaker import CircuitBreaker
from shared.adapters.gpu_endpoint_transport import (
    EndpointReply,
    GpuEndpointTransport,
    TransientFailure,
)


class GpuEndpointHttp(GpuEndpointTransport):
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
        super().__init__(
            breaker=breaker or CircuitBreaker(f"gpu endpoint {self.base_url}"),
            retries=retries,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            sleep=sleep,
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _send(self, path: str, payload: dict[str, Any]) -> EndpointReply:
        try:
            response = self._http.post(path, json=payload)
        except httpx.TimeoutException as exc:
            raise TransientFailure(f"timed out ({type(exc).__name__})", "model_timeout") from exc
        except httpx.TransportError as exc:
            raise TransientFailure(f"unreachable ({exc!r})", "model_unavailable") from exc
        return EndpointReply(response.status_code, _json_or_empty(response))


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def as_transport(endpoint: GpuEndpointTransport | str) -> GpuEndpointTransport:
    """Adapters take a shared transport, or a URL for an HTTP one of their own."""
    return endpoint if isinstance(endpoint, GpuEndpointTransport) else GpuEndpointHttp(endpoint)
