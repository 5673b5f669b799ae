"""Settings of the GPU endpoint, read from ``QUARRY_GPU_*`` environment variables.

Model directories are local paths (baked into the image at build, or the bundled MiniLM package
locally); nothing is ever fetched from a model hub at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Device = Literal["auto", "cpu", "cuda"]


class GpuEndpointSettings(BaseSettings):
    # An empty variable counts as unset: the image sets QUARRY_GPU_RERANKER_MODEL_DIR to ""
    # when no cross-encoder was baked in.
    model_config = SettingsConfigDict(
        env_prefix="QUARRY_GPU_", extra="ignore", env_ignore_empty=True
    )

    host: str = Field(default="127.0.0.1", description="Bind address (0.0.0.0 in the image).")
    port: int = Field(
        default=8081,
        ge=1,
        le=65535,
        description="Port (8081 beside `quarry serve`; 8080 in the image).",
    )
    log_level: str = Field(default="INFO", description="Log level.")

    model_dir: Path | None = Field(
        default=None, description="Embedding model directory. Default: the bundled MiniLM."
    )
    model_name: str = Field(default="all-MiniLM-L6-v2", description="Name of the embedding model.")
    max_tokens: int = Field(default=256, ge=8, le=512, description="Tokens kept per text.")
    reranker_model_dir: Path | None = Field(
        default=None,
        description="sentence-transformers CrossEncoder directory; unset: /rerank answers 503.",
    )
    reranker_model_name: str = Field(default="cross-encoder", description="Reranker name.")
    ocr_enabled: bool = Field(default=True, description="Serve /ocr with the bundled PP-OCR.")

    device: Device = Field(default="auto", description="`auto`: CUDA when present, else CPU.")
    torch_threads: int = Field(default=0, ge=0, description="CPU threads for torch; 0 = default.")
    cuda_fp16: bool = Field(default=True, description="Half-precision weights on CUDA.")

    batch_min: int = Field(default=10, ge=1, description="Smallest batch after OOM halving.")
    batch_max: int = Field(default=128, ge=1, description="Largest batch the size grows to.")
    batch_initial: int | None = Field(
        default=None, description="Starting batch size; unset: by device memory class."
    )
    batch_small: int = Field(default=10, ge=1, description="Start size: GPU under 12 GiB.")
    batch_medium: int = Field(default=32, ge=1, description="Start size: CPU, GPU under 40 GiB.")
    batch_large: int = Field(default=64, ge=1, description="Start size: GPU of 40 GiB or more.")
    max_wait_ms: float = Field(
        default=5.0, ge=0, description="Longest a request waits for others to share its batch."
    )
    grow_after_batches: int = Field(
        default=10, ge=1, description="Full batches without OOM before the size doubles."
    )
    ocr_max_batch: int = Field(default=4, ge=1, description="Images per OCR batch.")

    max_texts_per_request: int = Field(default=256, ge=1, description="Most texts per request.")
    max_text_chars: int = Field(default=20_000, ge=1, description="Longest text accepted.")
    max_image_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="Largest decoded image accepted."
    )
    max_image_pixels: int = Field(
        default=60_000_000, ge=1, description="Largest image (decompression-bomb guard)."
    )

    @model_validator(mode="after")
    def _check_batch_bounds(self) -> GpuEndpointSettings:
        if self.batch_min > self.batch_max:
            raise ValueError("batch_min must not exceed batch_max")
        sizes = [self.batch_small, self.batch_medium, self.batch_large]
        if self.batch_initial is not None:
            sizes.append(self.batch_initial)
        if any(not self.batch_min <= size <= self.batch_max for size in sizes):
            raise ValueError("every starting batch size must lie within batch_min..batch_max")
        return self

    def initial_batch(self, device: str, device_memory_gib: float | None) -> int:
        """The explicit ``batch_initial``, else a size by memory class: a GPU's memory bounds how
        many sequences fit at once; on CPU the runner's token budget bounds the working set."""
        if self.batch_initial is not None:
            return self.batch_initial
        if device != "cuda" or device_memory_gib is None:
            return self.batch_medium
        if device_memory_gib < 12:
            return self.batch_small
        if device_memory_gib < 40:
            return self.batch_medium
        return self.batch_large
