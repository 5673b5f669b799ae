"""Embeddings from the GPU endpoint (``POST /embed``), the cloud's ``Embedder``."""

from __future__ import annotations

import numpy as np

from shared.adapters.gpu_endpoint_http import as_transport
from shared.adapters.gpu_endpoint_transport import GpuEndpointTransport
from shared.errors import DependencyUnavailable
from shared.ports.embedder import Vectors

# The endpoint's default ``max_texts_per_request``; larger inputs go in several requests.
DEFAULT_MAX_TEXTS_PER_REQUEST = 256


class GpuEndpointEmbedder:
    def __init__(
        self,
        endpoint: GpuEndpointTransport | str,
        *,
        model_name: str,
        dimension: int = 384,
        max_texts_per_request: int = DEFAULT_MAX_TEXTS_PER_REQUEST,
    ) -> None:
        self._endpoint = as_transport(endpoint)
        self._model_name = model_name
        self._dimension = dimension
        self._per_request = max_texts_per_request

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        parts = [
            self._embed_part(texts[start : start + self._per_request])
            for start in range(0, len(texts), self._per_request)
        ]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _embed_part(self, texts: list[str]) -> Vectors:
        body = self._endpoint.post("/embed", {"texts": texts, "model": self._model_name})
        vectors = np.asarray(body.get("vectors"), dtype=np.float32)
        if vectors.shape != (len(texts), self._dimension):
            raise DependencyUnavailable(
                f"the GPU endpoint returned vectors of shape {vectors.shape} "
                f"for {len(texts)} texts of dimension {self._dimension}",
                code="bad_model_response",
            )
        return vectors
