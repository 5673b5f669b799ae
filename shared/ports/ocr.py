"""The OCR port: recognise the text lines in one page image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image


@dataclass(frozen=True)
class OcrLine:
    """One recognised line: its text, its axis-aligned box in pixels, the engine's confidence."""

    text: str
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1), origin top-left
    score: float


class OcrEngine(Protocol):
    def recognize(self, image: Image.Image) -> list[OcrLine]:
        """The text lines found in ``image``, in no particular order."""
        ...
