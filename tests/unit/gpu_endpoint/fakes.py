"""Fake model runners: the endpoint's behaviour without loading a model."""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared.ports.embedder import Vectors
from shared.ports.ocr import OcrLine


class FakeEmbeddingRunner:
    model_name = "fake-minilm"
    dimension = 4

    def __init__(self) -> None:
        self.loaded = 0
        self.batches: list[list[str]] = []

    def load(self) -> None:
        self.loaded += 1

    def embed(self, texts: list[str]) -> Vectors:
        self.batches.append(list(texts))
        vectors = np.array([[len(t), 1.0, 0.0, 0.0] for t in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def release_memory(self) -> None:
        pass


class FakeRerankRunner:
    model_name = "fake-cross-encoder"

    def load(self) -> None:
        pass

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        # Words shared with the query: enough to tell passages apart.
        return [float(len(set(q.split()) & set(p.split()))) for q, p in pairs]

    def release_memory(self) -> None:
        pass


class FakeOcrRunner:
    model_name = "fake-ocr"

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def load(self) -> None:
        pass

    def recognize(self, images: list[Image.Image]) -> list[list[OcrLine]]:
        self.sizes.extend(image.size for image in images)
        # Returned bottom line first: the endpoint puts them in reading order.
        return [
            [
                OcrLine("second line", (2, 20, 40, 30), 0.8),
                OcrLine("first line", (2, 2, 40, 12), 0.9),
            ]
            for _ in images
        ]
