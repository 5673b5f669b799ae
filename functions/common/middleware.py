"""Per-request plumbing as one pure ASGI middleware (cheaper than BaseHTTPMiddleware).

Request id (header ``X-Request-ID``, else the API Gateway request id, else a new one) on the
response and every log line; body-size limit; latency and error metrics per route; slow-request
log; unexpected errors answered as a JSON 500 that keeps the request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.common.errors import error_body
from shared.observability.logging import request_id_var
from shared.observability.metrics import MetricsSink

log = logging.getLogger(__name__)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:=-]{1,128}$")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(candidate):
                return candidate
    event: dict[str, Any] = scope.get("aws.event") or {}
    aws_id = (event.get("requestContext") or {}).get("requestId")
    return str(aws_id) if aws_id else uuid.uuid4().hex


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, *, metrics: MetricsSink, max_body_bytes: int, slow_ms: float
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.slow_ms = slow_ms
        self._tallies: dict[str, list[int]] = {}  # route -> [requests, server errors]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            length = _content_length(scope)
            if length is not None and length > self.max_body_bytes:
                response = error_body(
                    413,
                    "payload_too_large",
                    f"the request body is larger than {self.max_body_bytes} bytes",
                )
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if response_started:
                raise
            await error_body(500, "internal_error", "an internal error occurred")(
                scope, receive, send_with_id
            )
        finally:
            self._record(scope, status, (time.perf_counter() - started) * 1000)

    def _record(self, scope: Scope, status: int, elapsed_ms: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.increment("http_requests", method=method, route=route, status=str(status))
        tally = self._tallies.setdefault(route, [0, 0])
        tally[0] += 1
        if status >= 500:
            tally[1] += 1
            self.metrics.increment("http_errors", method=method, route=route)
        self.metrics.set_gauge("http_error_rate", tally[1] / tally[0], route=route)
        self.metrics.observe_ms("http_request_latency", elapsed_ms, method=method, route=route)
        if elapsed_ms > self.slow_ms:
            log.warning(
                "slow request: %s %s took %.0f ms",
                method,
                route,
                elapsed_ms,
                extra={"route": route, "status": status, "elapsed_ms": round(elapsed_ms, 1)},
            )
