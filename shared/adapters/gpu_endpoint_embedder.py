"""Embeddings from the GPU endpoint (``POST /embed``), the cloud's embedder."""

from __future__ import annotations

import httpx
import numpy as np

from shared.errors import DependencyUnavailable
from shared.ports.embedder import Vectors


class GpuEndpointEmbedder:
    def __init__(
        self,
        base_url: str,
        *,
        model_name: str,
        dimension: int = 384,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._model_name = model_name
        self._dimension = dimension
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport
        )

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        try:
            response = self._http.post("/embed", json={"texts": texts, "model": self._model_name})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(
                f"the GPU endpoint did not embed: {exc}", code="model_unavailable"
            ) from exc
        vectors = np.asarray(response.json()["vectors"], dtype=np.float32)
        if vectors.shape != (len(texts), self._dimension):
            raise DependencyUnavailable(
                f"the GPU endpoint returned vectors of shape {vectors.shape}",
                code="model_unavailable",
            )
        return vectors
