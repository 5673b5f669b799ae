"""Reranking on the GPU endpoint (``POST /rerank``), the cloud's ``Reranker``."""

from __future__ import annotations

import math

from shared.adapters.gpu_endpoint_http import as_transport
from shared.adapters.gpu_endpoint_transport import GpuEndpointTransport
from shared.errors import DependencyUnavailable

DEFAULT_MAX_PASSAGES_PER_REQUEST = 256


class GpuEndpointReranker:
    def __init__(
        self,
        endpoint: GpuEndpointTransport | str,
        *,
        model_name: str = "cross-encoder",
        max_passages_per_request: int = DEFAULT_MAX_PASSAGES_PER_REQUEST,
    ) -> None:
        self._endpoint = as_transport(endpoint)
        self._model_name = model_name
        self._per_request = max_passages_per_request

    @property
    def model_name(self) -> str:
        return self._model_name

    def rerank(self, query: str, passages: list[str]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(passages), self._per_request):
            part = passages[start : start + self._per_request]
            body = self._endpoint.post("/rerank", {"query": query, "passages": part})
            got = body.get("scores")
            if not isinstance(got, list) or len(got) != len(part):
                raise DependencyUnavailable(
                    f"the GPU endpoint returned {got!r:.80} for {len(part)} passages",
                    code="bad_model_response",
                )
            scores.extend(_finite(value) for value in got)
        return scores


def _finite(value: object) -> float:
    score = float(value) if isinstance(value, int | float) else math.nan
    if not math.isfinite(score):
        raise DependencyUnavailable(
            f"the GPU endpoint returned the score {value!r}", code="bad_model_response"
        )
    return score
