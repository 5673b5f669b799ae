"""In-process embeddings with a BERT-style sentence encoder (all-MiniLM-L6-v2 by default).

Throughput on a small CPU comes from three things: batches of similar length (sorted by token
count, sized by a token budget, so little compute goes to padding), no attention mask when a batch
has no padding, and a deliberate thread count (torch and numpy each default to every core and
then fight). The model is loaded once, lazily, on first use.
"""

from __future__ import annotations

import threading
import time
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
        token_budget: int = 8192,
        threads: int = 0,
    ) -> None:
        self._model_dir = model_dir
        self._model_name = model_name
        self._dimension = dimension
        self._max_tokens = max_tokens
        self._token_budget = token_budget
        self._threads = threads
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
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

                if self._threads:
                    torch.set_num_threads(self._threads)
                tokenizer = Tokenizer.from_file(str(self._model_dir / "tokenizer.json"))
                # The shipped tokenizer.json pads and truncates to 128: undo both, keep our limit.
                tokenizer.enable_truncation(self._max_tokens)
                tokenizer.no_padding()
                model = AutoModel.from_pretrained(str(self._model_dir), attn_implementation="sdpa")
                self._tokenizer, self._model = tokenizer, model.eval()
            return self._tokenizer, self._model

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        import torch

        tokenizer, model = self._load()
        started = time.perf_counter()
        encodings = tokenizer.encode_batch(texts, add_special_tokens=True)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        out = np.empty((len(texts), self._dimension), dtype=np.float32)
        order = np.argsort(-lengths, kind="stable")
        start = 0
        with torch.inference_mode():
            while start < len(order):
                width = int(lengths[order[start]])
                rows = order[start : start + max(1, self._token_budget // width)]
                start += len(rows)
                ids = np.zeros((len(rows), width), dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                for r, j in enumerate(rows):
                    piece = encodings[j].ids
                    ids[r, : len(piece)] = piece
                    mask[r, : len(piece)] = 1
                ids_t = torch.from_numpy(ids)
                full = bool(mask.all())
                mask_t = torch.from_numpy(mask)
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
                out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
                self.stats.padded_tokens += ids.size
        self.stats.texts += len(texts)
        self.stats.tokens += int(lengths.sum())
        self.stats.tokens_squared += int((lengths**2).sum())
        self.stats.seconds += time.perf_counter() - started
        return out
