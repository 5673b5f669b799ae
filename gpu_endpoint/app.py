"""The GPU endpoint's HTTP app: Quarry's routes and the SageMaker real-time contract.

``POST /embed``, ``/rerank``, ``/ocr`` and ``GET /health`` for Quarry's clients; ``GET /ping`` and
``POST /invocations`` (dispatching on the payload's ``task``) for SageMaker. Models load once, in
the lifespan, before the server accepts a request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from functions.common.errors import error_body, install_error_handlers
from gpu_endpoint.runners import Runners
from gpu_endpoint.schemas import (
    BadRequest,
    EmbedRequest,
    EmbedResponse,
    HealthResponse,
    OcrRequest,
    OcrResponse,
    RerankRequest,
    RerankResponse,
)
from gpu_endpoint.service import ModelService
from gpu_endpoint.settings import GpuEndpointSettings

log = logging.getLogger(__name__)


def _service(request: Request) -> ModelService:
    service: ModelService = request.app.state.service
    return service


Service = Annotated[ModelService, Depends(_service)]


def create_app(
    settings: GpuEndpointSettings | None = None, runners: Runners | None = None
) -> FastAPI:
    """``runners``: already built (tests pass fakes); by default built from ``settings``."""
    settings = settings or GpuEndpointSettings()
    service = ModelService(settings, runners)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        log.info("gpu endpoint ready", extra={"device": service.runners and service.runners.device})
        try:
            yield
        finally:
            await service.aclose()

    app = FastAPI(title="Quarry GPU endpoint", version="0.1.0", lifespan=lifespan)
    app.state.service = service
    install_error_handlers(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    _add_routes(app)
    return app


def _add_routes(app: FastAPI) -> None:
    @app.post("/embed")
    async def embed(body: EmbedRequest, service: Service) -> EmbedResponse:
        return await service.embed(body)

    @app.post("/rerank")
    async def rerank(body: RerankRequest, service: Service) -> RerankResponse:
        return await service.rerank(body)

    @app.post("/ocr")
    async def ocr(body: OcrRequest, service: Service) -> OcrResponse:
        return await service.ocr(body)

    @app.get("/health")
    async def health(service: Service, response: Response) -> HealthResponse:
        """Per-model status and batching figures; 503 until the models are loaded."""
        response.status_code = 200 if service.ready else 503
        return service.health()

    @app.get("/ping")
    async def ping(service: Service) -> Response:
        """SageMaker's health check: 200 once every configured model is loaded."""
        return Response(status_code=200 if service.ready else 503)

    @app.post("/invocations")
    async def invocations(request: Request, service: Service) -> Any:
        """SageMaker's inference route: ``{"task": "embed" | "rerank" | "ocr", ...}``."""
        payload = _json_object(await request.body())
        task = payload.pop("task", None)
        handlers: dict[str, tuple[type[BaseModel], Callable[[Any], Awaitable[BaseModel]]]] = {
            "embed": (EmbedRequest, service.embed),
            "rerank": (RerankRequest, service.rerank),
            "ocr": (OcrRequest, service.ocr),
        }
        if not isinstance(task, str) or task not in handlers:
            raise BadRequest(
                f"task must be one of {sorted(handlers)}, not {task!r}", code="unknown_task"
            )
        model, handler = handlers[task]
        try:
            body = model.model_validate(payload)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from exc
        return await handler(body)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest("the body is not JSON", code="invalid_json") from exc
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    return payload


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """As in every Quarry app, except that a body that is not a JSON object at all (bad JSON, no
    JSON content type, a list) is a 400: nothing in it could be validated."""
    assert isinstance(exc, RequestValidationError)
    if any(
        err.get("type") == "json_invalid" or tuple(err.get("loc", ())) == ("body",)
        for err in exc.errors()
    ):
        return error_body(400, "invalid_json", "the body is not a JSON object")
    fields = [
        {
            "path": ".".join(str(part) for part in err.get("loc", ())),
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]
    return error_body(422, "validation_error", "the request is not valid", {"fields": fields})


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("gpu endpoint request failed", exc_info=exc)
    return error_body(500, "internal_error", "the model call failed")
