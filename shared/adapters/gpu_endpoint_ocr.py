"""OCR on the GPU endpoint (``POST /ocr``), the cloud's ``OcrEngine``."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from shared.adapters.gpu_endpoint_http import as_transport
from shared.adapters.gpu_endpoint_transport import GpuEndpointTransport
from shared.errors import DependencyUnavailable
from shared.ports.ocr import OcrLine


class GpuEndpointOcr:
    def __init__(self, endpoint: GpuEndpointTransport | str) -> None:
        self._endpoint = as_transport(endpoint)

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        buffer = io.BytesIO()
        # PNG: lossless, so the endpoint reads exactly the pixels the extractor rendered.
        image.convert("RGB").save(buffer, format="PNG")
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        body = self._endpoint.post("/ocr", {"image_base64": encoded})
        try:
            return [_line(raw) for raw in body["lines"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise DependencyUnavailable(
                f"the GPU endpoint returned malformed OCR lines: {exc}", code="bad_model_response"
            ) from exc


def _line(raw: dict[str, Any]) -> OcrLine:
    x0, y0, x1, y1 = (float(v) for v in raw["box"])
    return OcrLine(str(raw["text"]), (x0, y0, x1, y1), float(raw["score"]))
