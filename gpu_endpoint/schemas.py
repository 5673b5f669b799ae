"""Request and response bodies of the GPU endpoint (also the SageMaker ``/invocations`` payloads,
which add a ``task`` field)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import QuarryError


class BadRequest(QuarryError):
    """A body that is not what the route reads at all (not JSON, an unknown task)."""

    status_code = 400
    code = "bad_request"


class _Strict(BaseModel):
    # A misspelt field should fail loudly rather than be ignored.
    model_config = ConfigDict(extra="forbid")


class EmbedRequest(_Strict):
    texts: list[str]
    model: str | None = Field(default=None, description="Must name the loaded model when set.")


class EmbedResponse(BaseModel):
    model: str
    dimension: int
    vectors: list[list[float]]


class RerankRequest(_Strict):
    query: str
    passages: list[str]


class RerankResponse(BaseModel):
    model: str
    scores: list[float] = Field(description="One relevance score per passage, in order.")


class OcrRequest(_Strict):
    image_base64: str = Field(description="A PNG, JPEG, TIFF… image, base64-encoded.")


class OcrLineOut(BaseModel):
    text: str
    box: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 in pixels.")
    score: float


class OcrResponse(BaseModel):
    lines: list[OcrLineOut]
    text: str = Field(description="The lines in reading order, one per line.")


ModelStatus = Literal["ready", "loading", "unavailable"]


class ModelHealth(BaseModel):
    status: ModelStatus
    name: str | None = None
    batching: dict[str, int] | None = None


class HealthResponse(BaseModel):
    status: Literal["ok", "starting"]
    device: str | None
    models: dict[str, ModelHealth]
