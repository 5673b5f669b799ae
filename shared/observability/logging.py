"""Structured JSON logging with the request id on every line.

The request id lives in a context variable set by the HTTP middleware (or the Lambda entry
point), so domain modules keep using ``logging.getLogger(__name__)`` and still get it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

request_id_var: ContextVar[str | None] = ContextVar("quarry_request_id", default=None)

_CONFIGURED_FLAG = "_quarry_configured"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO", service: str = "quarry") -> None:
    """Idempotent: the root logger gets one JSON handler carrying the request id."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if getattr(root, _CONFIGURED_FLAG, False):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(LambdaPowertoolsFormatter(service=service))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    setattr(root, _CONFIGURED_FLAG, True)


@contextmanager
def slow_operation_log(
    logger: logging.Logger, operation: str, threshold_ms: float, **context: object
) -> Iterator[None]:
    """Logs a warning when the wrapped block takes longer than ``threshold_ms``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        if elapsed_ms > threshold_ms:
            logger.warning(
                "slow operation: %s took %.0f ms",
                operation,
                elapsed_ms,
                extra={"operation": operation, "elapsed_ms": round(elapsed_ms, 1), **context},
            )
