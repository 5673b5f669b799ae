"""The endpoint with real model runners on CPU: the bundled MiniLM, and a tiny cross-encoder
built here from a random config (no cross-encoder weights ship in any package)."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from gpu_endpoint.app import create_app
from gpu_endpoint.settings import GpuEndpointSettings
from shared.adapters.local_models import minilm_model_dir
from shared.adapters.transformer_embedder import TransformerEmbedder

pytestmark = pytest.mark.integration

TEXTS = [
    "Aspirin lowers the risk of a second heart attack.",
    "Micro-batching merges concurrent requests into one forward pass.",
    "short",
]


def test_the_endpoint_embeds_exactly_as_the_in_process_embedder() -> None:
    settings = GpuEndpointSettings(device="cpu", ocr_enabled=False)
    with TestClient(create_app(settings)) as client:
        response = client.post("/embed", json={"texts": TEXTS})
        health = client.get("/health").json()

    assert response.status_code == 200
    body = response.json()
    assert (body["model"], body["dimension"]) == ("all-MiniLM-L6-v2", 384)
    expected = TransformerEmbedder(minilm_model_dir()).embed(TEXTS)
    np.testing.assert_allclose(np.array(body["vectors"]), expected, atol=1e-5)
    assert health["device"] == "cpu"
    assert health["models"]["reranker"]["status"] == "unavailable"


@pytest.fixture
def tiny_cross_encoder(tmp_path: Path) -> Path:
    """A one-layer BERT sequence classifier with MiniLM's tokenizer, saved as a directory."""
    from transformers import BertConfig, BertForSequenceClassification

    source = minilm_model_dir()
    vocab_size = json.loads((source / "config.json").read_text())["vocab_size"]
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=1,
    )
    target = tmp_path / "cross-encoder"
    BertForSequenceClassification(config).save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, target / name)
    return target


def test_the_reranker_loads_a_cross_encoder_directory(tiny_cross_encoder: Path) -> None:
    settings = GpuEndpointSettings(
        device="cpu", ocr_enabled=False, reranker_model_dir=tiny_cross_encoder
    )
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/invocations",
            json={"task": "rerank", "query": "heart attack", "passages": TEXTS},
        )

    assert response.status_code == 200
    scores = response.json()["scores"]
    assert len(scores) == 3
    assert all(np.isfinite(scores))


def test_ocr_reads_a_rendered_line_with_the_bundled_pp_ocr() -> None:
    image = Image.new("RGB", (400, 80), "white")
    ImageDraw.Draw(image).text((10, 30), "QUARRY 2024", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")

    settings = GpuEndpointSettings(device="cpu")
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/ocr", json={"image_base64": base64.b64encode(buffer.getvalue()).decode()}
        )

    assert response.status_code == 200
    assert "QUARRY" in response.json()["text"]
