"""The one Lambda entry-point factory: Powertools Logger, Tracer and Metrics around Mangum.

HTTP API (payload v2.0) events go to the domain's FastAPI app; a domain that also takes other
events (S3, EventBridge, schedules, Step Functions tasks) passes ``on_other_event``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from fastapi import FastAPI
from mangum import Mangum

from shared.settings import get_settings

LambdaHandler = Callable[[dict[str, Any], LambdaContext], Any]
T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """The execution environment's one event loop, made current. HTTP events (Mangum runs on the
    current loop) and other events (``run_async``) share it, so pooled database connections made
    in one invocation stay usable in the next, whatever the events' order."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    return _loop


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return event_loop().run_until_complete(coro)


def is_authorizer_event(event: dict[str, Any]) -> bool:
    """An HTTP API Lambda authorizer request (payload 2.0): shaped like a request, plus these."""
    return event.get("type") == "REQUEST" and "routeArn" in event


def is_http_api_event(event: dict[str, Any]) -> bool:
    context = event.get("requestContext")
    return (
        isinstance(context, dict)
        and "http" in context
        and "routeKey" in event
        and not is_authorizer_event(event)
    )


def make_lambda_handler(
    app: FastAPI, service: str, *, on_other_event: LambdaHandler | None = None
) -> LambdaHandler:
    namespace = get_settings().observability.metrics_namespace
    logger = Logger(service=f"quarry-{service}")
    tracer = Tracer(service=f"quarry-{service}")
    metrics = Metrics(namespace=namespace, service=f"quarry-{service}")
    # lifespan off: the container is built lazily on first use and kept for warm invocations.
    asgi = Mangum(app, lifespan="off")

    @logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
    )
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
        if is_http_api_event(event):
            event_loop()
            return asgi(event, context)  # type: ignore[arg-type]  # same shape, other stubs
        if on_other_event is not None:
            return on_other_event(event, context)
        raise ValueError(f"quarry-{service} does not handle this event shape")

    wrapped: LambdaHandler = lambda_handler
    return wrapped
