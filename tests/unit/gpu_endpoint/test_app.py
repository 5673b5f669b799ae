from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gpu_endpoint.app import create_app
from gpu_endpoint.runners import Runners
from gpu_endpoint.settings import GpuEndpointSettings
from tests.unit.gpu_endpoint.fakes import FakeEmbeddingRunner, FakeOcrRunner, FakeRerankRunner

pytestmark = pytest.mark.unit


def settings(**overrides: Any) -> GpuEndpointSettings:
    values: dict[str, Any] = {"max_wait_ms": 1, "max_texts_per_request": 8, "max_text_chars": 100}
    values.update(overrides)
    return GpuEndpointSettings(**values)


def tiny_png(size: tuple[int, int] = (48, 32)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def embedder() -> FakeEmbeddingRunner:
    return FakeEmbeddingRunner()


@pytest.fixture
def client(embedder: FakeEmbeddingRunner) -> Iterator[TestClient]:
    runners = Runners(embedder, FakeRerankRunner(), FakeOcrRunner())
    with TestClient(create_app(settings(), runners)) as test_client:
        yield test_client


@pytest.fixture
def bare_client() -> Iterator[TestClient]:
    """No reranker and no OCR, as on a laptop without cross-encoder weights."""
    with TestClient(create_app(settings(), Runners(FakeEmbeddingRunner()))) as test_client:
        yield test_client


def test_models_load_once_at_start(embedder: FakeEmbeddingRunner, client: TestClient) -> None:
    client.post("/embed", json={"texts": ["a"]})
    client.post("/embed", json={"texts": ["b"]})
    assert embedder.loaded == 1


def test_embed_returns_one_normalised_vector_per_text(client: TestClient) -> None:
    response = client.post("/embed", json={"texts": ["a", "abc"], "model": "fake-minilm"})

    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "fake-minilm"
    assert body["dimension"] == 4
    vectors = np.array(body["vectors"])
    assert vectors.shape == (2, 4)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert vectors[1, 0] > vectors[0, 0]  # the fake encodes length: order is kept


def test_embed_refuses_a_model_it_does_not_serve(client: TestClient) -> None:
    response = client.post("/embed", json={"texts": ["a"], "model": "e5-large"})
    assert (response.status_code, response.json()["code"]) == (404, "unknown_model")


def test_rerank_scores_each_passage(client: TestClient) -> None:
    response = client.post(
        "/rerank", json={"query": "gpu batching", "passages": ["cpu only", "gpu batching wins"]}
    )
    assert response.status_code == 200
    assert response.json()["scores"] == [0.0, 2.0]


def test_rerank_without_a_reranker_is_503_model_unavailable(bare_client: TestClient) -> None:
    response = bare_client.post("/rerank", json={"query": "q", "passages": ["p"]})
    assert (response.status_code, response.json()["code"]) == (503, "model_unavailable")


def test_ocr_reads_a_png_and_returns_lines_in_reading_order(client: TestClient) -> None:
    response = client.post("/ocr", json={"image_base64": tiny_png()})

    assert response.status_code == 200
    body = response.json()
    assert [line["text"] for line in body["lines"]] == ["first line", "second line"]
    assert body["lines"][0]["box"] == [2.0, 2.0, 40.0, 12.0]
    assert body["text"] == "first line\nsecond line"


def test_health_reports_each_model(client: TestClient, bare_client: TestClient) -> None:
    full = client.get("/health")
    assert full.status_code == 200
    models = full.json()["models"]
    assert {k: v["status"] for k, v in models.items()} == {
        "embedding": "ready",
        "reranker": "ready",
        "ocr": "ready",
    }
    assert models["embedding"]["name"] == "fake-minilm"
    assert models["embedding"]["batching"]["batch_size"] == 32  # CPU starts at the medium size

    bare = bare_client.get("/health").json()["models"]
    assert bare["reranker"]["status"] == "unavailable"
    assert bare["ocr"]["status"] == "unavailable"


def test_ping_is_200_once_loaded_and_503_before() -> None:
    app = create_app(settings(), Runners(FakeEmbeddingRunner()))
    not_started = TestClient(app)  # without ``with``: the lifespan has not run
    assert not_started.get("/ping").status_code == 503
    assert not_started.get("/health").status_code == 503
    with TestClient(app) as started:
        assert started.get("/ping").status_code == 200


@pytest.mark.parametrize(
    ("payload", "key", "expected"),
    [
        ({"task": "embed", "texts": ["a", "abcd"]}, "dimension", 4),
        ({"task": "rerank", "query": "a b", "passages": ["a", "a b"]}, "scores", [1.0, 2.0]),
        ({"task": "ocr", "image_base64": tiny_png()}, "text", "first line\nsecond line"),
    ],
)
def test_invocations_dispatch_on_the_task(
    client: TestClient, payload: dict[str, Any], key: str, expected: object
) -> None:
    response = client.post("/invocations", json=payload)
    assert response.status_code == 200
    assert response.json()[key] == expected


@pytest.mark.parametrize(
    ("path", "payload", "status", "code"),
    [
        ("/embed", {"texts": []}, 422, "empty_texts"),
        ("/embed", {"texts": ["x"] * 9}, 413, "too_many_texts"),
        ("/embed", {"texts": ["x" * 101]}, 413, "text_too_long"),
        ("/embed", {"texts": "not a list"}, 422, "validation_error"),
        ("/embed", {"text": ["misspelt field"]}, 422, "validation_error"),
        ("/embed", b"{not json", 400, "invalid_json"),
        ("/embed", [1, 2], 400, "invalid_json"),
        ("/rerank", {"query": " ", "passages": ["p"]}, 422, "empty_query"),
        ("/rerank", {"query": "q", "passages": []}, 422, "empty_passages"),
        ("/ocr", {"image_base64": "not base64!"}, 422, "invalid_base64"),
        ("/ocr", {"image_base64": base64.b64encode(b"plain text").decode()}, 422, "invalid_image"),
        ("/invocations", {"task": "translate", "texts": ["a"]}, 400, "unknown_task"),
        ("/invocations", {"texts": ["a"]}, 400, "unknown_task"),
        ("/invocations", {"task": "embed", "texts": []}, 422, "empty_texts"),
        ("/invocations", {"task": "embed", "query": "x"}, 422, "validation_error"),
        ("/invocations", b"\xff\xfe not json", 400, "invalid_json"),
        ("/invocations", ["embed"], 400, "invalid_json"),
    ],
)
def test_bad_payloads_are_4xx_with_a_code(
    client: TestClient, path: str, payload: object, status: int, code: str
) -> None:
    if isinstance(payload, bytes):
        response = client.post(path, content=payload, headers={"content-type": "application/json"})
    else:
        response = client.post(path, json=payload)
    assert (response.status_code, response.json()["code"]) == (status, code)


def test_images_over_the_limits_are_413() -> None:
    runners = Runners(FakeEmbeddingRunner(), ocr=FakeOcrRunner())
    with TestClient(create_app(settings(max_image_bytes=64), runners)) as small_bytes:
        response = small_bytes.post("/ocr", json={"image_base64": tiny_png()})
        assert (response.status_code, response.json()["code"]) == (413, "image_too_large")
    with TestClient(create_app(settings(max_image_pixels=100), runners)) as small_pixels:
        response = small_pixels.post("/ocr", json={"image_base64": tiny_png()})
        assert (response.status_code, response.json()["code"]) == (413, "image_too_large")


async def test_concurrent_http_requests_share_model_batches() -> None:
    embedder = FakeEmbeddingRunner()
    app = create_app(settings(max_wait_ms=50), Runners(embedder))
    service = app.state.service
    await service.start()  # the lifespan's work; ASGITransport does not run lifespans
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gpu") as http:
            responses = await asyncio.gather(
                *(
                    http.post("/embed", json={"texts": [f"text {i}", f"more {i}"]})
                    for i in range(16)
                )
            )
    finally:
        await service.aclose()

    assert all(r.status_code == 200 for r in responses)
    assert sum(len(batch) for batch in embedder.batches) == 32
    assert len(embedder.batches) < 16  # 16 requests, fewer model calls
    assert service.health().models["embedding"].batching["batches_run"] == len(embedder.batches)
