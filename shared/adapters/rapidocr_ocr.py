"""OCR with RapidOCR's bundled PP-OCR ONNX models on onnxruntime (CPU).

The model files ship inside the ``rapidocr`` wheel. Their paths are passed explicitly: given no
path, RapidOCR resolves a download URL and fetches the file when it is missing, and nothing may
download at run time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import rapidocr
from PIL import Image

from shared.errors import DependencyUnavailable
from shared.ports.ocr import OcrLine

_MODEL_DIR = Path(rapidocr.__file__).resolve().parent / "models"
# The defaults of rapidocr 3.10's config.yaml (PP-OCRv6 small detection and recognition, which read
# Latin scripts and Chinese, plus the text-direction classifier).
_MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}


class RapidOcrEngine:
    """An ``OcrEngine``. The pipeline is built on first use, once, and shared by all threads."""

    def __init__(
        self,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        model_dir: Path = _MODEL_DIR,
    ) -> None:
        self._intra_op_threads = intra_op_threads
        self._inter_op_threads = inter_op_threads
        self._model_dir = model_dir
        self._engine: Any = None
        self._load_lock = threading.Lock()
        # RapidOCR keeps per-call settings on the pipeline object, so calls are serialised;
        # onnxruntime already spreads one call over ``intra_op_threads`` cores.
        self._run_lock = threading.Lock()

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        engine = self._load()
        # RapidOCR wants a contiguous BGR array (OpenCV's channel order).
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        with self._run_lock:
            result = engine(pixels)
        if result.boxes is None or result.txts is None or result.scores is None:
            return []
        lines: list[OcrLine] = []
        for quad, text, score in zip(result.boxes, result.txts, result.scores, strict=True):
            xs = [float(point[0]) for point in quad]
            ys = [float(point[1]) for point in quad]
            lines.append(OcrLine(str(text), (min(xs), min(ys), max(xs), max(ys)), float(score)))
        return lines

    def _load(self) -> Any:
        if self._engine is None:
            with self._load_lock:
                if self._engine is None:
                    self._engine = self._build()
        return self._engine

    def _build(self) -> Any:
        params: dict[str, Any] = {
            "Global.log_level": "error",
            # Quarry filters by confidence itself (see ``ocr_layout``), so keep what the engine saw.
            "Global.text_score": 0.0,
            "EngineConfig.onnxruntime.intra_op_num_threads": self._intra_op_threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": self._inter_op_threads,
        }
        for stage, file_name in _MODEL_FILES.items():
            path = self._model_dir / file_name
            if not path.is_file():
                raise DependencyUnavailable(
                    f"OCR model file {path} is missing", code="ocr_model_missing"
                )
            params[f"{stage}.model_path"] = str(path)
        return rapidocr.RapidOCR(params=params)
