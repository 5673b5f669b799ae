"""HTTP client of the GPU model endpoint (embeddings, reranking, OCR in the cloud)."""

from __future__ import annotations

import httpx


class GpuEndpointClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport
        )

    async def health(self) -> None:
        response = await self._http.get("/health")
        response.raise_for_status()

    async def aclose(self) -> None:
        await self._http.aclose()
