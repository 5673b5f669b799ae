"""What the routes call: request limits, one batcher per model, image decoding, health."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import warnings
from typing import Any

import numpy as np
from PIL import Image

from gpu_endpoint.batching import BatchPolicy, DynamicBatcher
from gpu_endpoint.runners import Runners, build_runners
from gpu_endpoint.schemas import (
    EmbedRequest,
    EmbedResponse,
    HealthResponse,
    ModelHealth,
    ModelStatus,
    OcrLineOut,
    OcrRequest,
    OcrResponse,
    RerankRequest,
    RerankResponse,
)
from gpu_endpoint.settings import GpuEndpointSettings
from shared.errors import DependencyUnavailable, InvalidInput, NotFound, PayloadTooLarge
from shared.ports.ocr import OcrLine

Pair = tuple[str, str]


class ModelService:
    """Cheap to build; ``start()`` builds the runners (unless given), loads every model once and
    starts the batchers. Routes answer 503 until it has."""

    def __init__(self, settings: GpuEndpointSettings, runners: Runners | None = None) -> None:
        self.settings = settings
        self.runners = runners
        self.ready = False
        self._embed: DynamicBatcher[str, Any] | None = None
        self._rerank: DynamicBatcher[Pair, float] | None = None
        self._ocr: DynamicBatcher[Image.Image, list[OcrLine]] | None = None

    async def start(self) -> None:
        s = self.settings
        if self.runners is None:
            self.runners = await asyncio.to_thread(build_runners, s)
        runners = self.runners
        for runner in (runners.embedding, runners.reranker, runners.ocr):
            if runner is not None:
                await asyncio.to_thread(runner.load)
        initial = s.initial_batch(runners.device, runners.device_memory_gib)
        policy = BatchPolicy(s.batch_min, s.batch_max, initial, s.max_wait_ms, s.grow_after_batches)
        self._embed = DynamicBatcher(
            runners.embedding.embed,
            policy,
            name="embed",
            on_oom=runners.embedding.release_memory,
        )
        if runners.reranker is not None:
            self._rerank = DynamicBatcher(
                runners.reranker.score,
                policy,
                name="rerank",
                on_oom=runners.reranker.release_memory,
            )
        if runners.ocr is not None:
            ocr_policy = BatchPolicy(1, s.ocr_max_batch, s.ocr_max_batch, s.max_wait_ms)
            self._ocr = DynamicBatcher(runners.ocr.recognize, ocr_policy, name="ocr")
        self.ready = True

    async def aclose(self) -> None:
        self.ready = False
        for batcher in (self._embed, self._rerank, self._ocr):
            if batcher is not None:
                await batcher.aclose()

    # --- tasks ---------------------------------------------------------------------------
    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        runners, batcher = self._require(self._embed, "embedding")
        runner = runners.embedding
        if request.model is not None and request.model != runner.model_name:
            raise NotFound(f"model {request.model!r} is not served here", code="unknown_model")
        self._check_texts(request.texts, "texts")
        rows = await batcher.submit(request.texts)
        vectors = np.stack(rows).astype(np.float32, copy=False)
        return EmbedResponse(
            model=runner.model_name, dimension=runner.dimension, vectors=vectors.tolist()
        )

    async def rerank(self, request: RerankRequest) -> RerankResponse:
        runners, batcher = self._require(self._rerank, "reranker")
        assert runners.reranker is not None  # a rerank batcher exists only with a reranker
        if not request.query.strip():
            raise InvalidInput("query must not be empty", code="empty_query")
        self._check_texts(request.passages, "passages")
        self._check_texts([request.query], "query")
        scores = await batcher.submit([(request.query, p) for p in request.passages])
        return RerankResponse(model=runners.reranker.model_name, scores=scores)

    async def ocr(self, request: OcrRequest) -> OcrResponse:
        _, batcher = self._require(self._ocr, "ocr")
        image = self._decode_image(request.image_base64)
        (lines,) = await batcher.submit([image])
        # Reading order: top to bottom, then left to right within a line.
        ordered = sorted(lines, key=lambda line: (round(line.box[1]), line.box[0]))
        return OcrResponse(
            lines=[OcrLineOut(text=x.text, box=x.box, score=x.score) for x in ordered],
            text="\n".join(line.text for line in ordered),
        )

    def health(self) -> HealthResponse:
        runners = self.runners
        if runners is None:  # the runners are still being built
            return HealthResponse(status="starting", device=None, models={})
        status: ModelStatus = "ready" if self.ready else "loading"

        def entry(runner: Any, batcher: DynamicBatcher[Any, Any] | None) -> ModelHealth:
            if runner is None:
                return ModelHealth(status="unavailable")
            stats = batcher.stats() if batcher is not None else None
            return ModelHealth(status=status, name=runner.model_name, batching=stats)

        return HealthResponse(
            status="ok" if self.ready else "starting",
            device=runners.device,
            models={
                "embedding": entry(runners.embedding, self._embed),
                "reranker": entry(runners.reranker, self._rerank),
                "ocr": entry(runners.ocr, self._ocr),
            },
        )

    # --- checks --------------------------------------------------------------------------
    def _require(self, batcher: DynamicBatcher[Any, Any] | None, what: str) -> tuple[Runners, Any]:
        if not self.ready or self.runners is None:
            raise DependencyUnavailable("the models are still loading", code="starting")
        if batcher is None:
            raise DependencyUnavailable(f"no {what} model is loaded", code="model_unavailable")
        return self.runners, batcher

    def _check_texts(self, texts: list[str], field: str) -> None:
        limit = self.settings.max_texts_per_request
        if not texts:
            raise InvalidInput(f"{field} must not be empty", code=f"empty_{field}")
        if len(texts) > limit:
            raise PayloadTooLarge(
                f"{len(texts)} {field} in one request; the limit is {limit}",
                code="too_many_texts",
                details={"limit": limit},
            )
        longest = max(len(t) for t in texts)
        if longest > self.settings.max_text_chars:
            raise PayloadTooLarge(
                f"a text of {longest} characters; the limit is {self.settings.max_text_chars}",
                code="text_too_long",
            )

    def _decode_image(self, encoded: str) -> Image.Image:
        s = self.settings
        # Checked before decoding: base64 is 4 characters per 3 bytes.
        if len(encoded) * 3 // 4 > s.max_image_bytes:
            raise PayloadTooLarge("the image is too large", code="image_too_large")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("image_base64 is not valid base64", code="invalid_base64") from exc
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                if image.width * image.height > s.max_image_pixels:
                    raise PayloadTooLarge("the image has too many pixels", code="image_too_large")
                image.load()
        except PayloadTooLarge:
            raise
        except (OSError, ValueError, Image.DecompressionBombError, Warning) as exc:
            raise InvalidInput(
                "image_base64 is not a readable image", code="invalid_image"
            ) from exc
        return image
