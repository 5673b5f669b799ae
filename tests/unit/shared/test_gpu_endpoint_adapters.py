from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from shared.adapters.circuit_breaker import BreakerState, CircuitBreaker, CircuitOpenError
from shared.adapters.gpu_endpoint_embedder import GpuEndpointEmbedder
from shared.adapters.gpu_endpoint_http import GpuEndpointHttp
from shared.adapters.gpu_endpoint_ocr import GpuEndpointOcr
from shared.adapters.gpu_endpoint_reranker import GpuEndpointReranker
from shared.errors import DependencyUnavailable, InvalidInput, PayloadTooLarge

pytestmark = pytest.mark.unit

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Endpoint:
    """A scripted GPU endpoint: answers with the queued responses, then with ``fallback``."""

    def __init__(self, *script: httpx.Response | Exception) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else embed_answer(request)
        if isinstance(step, Exception):
            raise step
        return step


def embed_answer(request: httpx.Request) -> httpx.Response:
    texts = json.loads(request.content)["texts"]
    vectors = [[1.0, 0.0, 0.0] for _ in texts]
    return httpx.Response(200, json={"model": "m", "dimension": 3, "vectors": vectors})


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": f"{code} happened"})


def make_http(
    endpoint: Handler,
    *,
    retries: int = 2,
    breaker: CircuitBreaker | None = None,
    sleeps: list[float] | None = None,
) -> GpuEndpointHttp:
    recorded = sleeps if sleeps is not None else []
    return GpuEndpointHttp(
        "http://gpu.test/",
        retries=retries,
        breaker=breaker or CircuitBreaker("gpu", failure_threshold=100),
        transport=httpx.MockTransport(endpoint),
        sleep=recorded.append,
    )


def embedder(http: GpuEndpointHttp, **kwargs: Any) -> GpuEndpointEmbedder:
    return GpuEndpointEmbedder(http, model_name="m", dimension=3, **kwargs)


def test_retries_on_503_then_succeeds_with_jittered_backoff() -> None:
    endpoint = Endpoint(error(503, "out_of_memory"), error(503, "out_of_memory"))
    sleeps: list[float] = []

    vectors = embedder(make_http(endpoint, sleeps=sleeps)).embed(["a", "b"])

    assert vectors.shape == (2, 3)
    assert vectors.dtype == np.float32
    assert len(endpoint.requests) == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.2
    assert 0 <= sleeps[1] <= 0.4


def test_connect_errors_and_timeouts_are_retried() -> None:
    endpoint = Endpoint(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"))
    assert embedder(make_http(endpoint)).embed(["a"]).shape == (1, 3)
    assert len(endpoint.requests) == 3


def test_spent_retries_raise_dependency_unavailable_with_the_cause() -> None:
    endpoint = Endpoint(*[httpx.ReadTimeout("slow")] * 3)
    with pytest.raises(DependencyUnavailable) as caught:
        embedder(make_http(endpoint)).embed(["a"])
    assert caught.value.code == "model_timeout"
    assert caught.value.details == {"attempts": 3}

    failing = Endpoint(*[error(500, "internal_error")] * 3)
    with pytest.raises(DependencyUnavailable) as caught:
        embedder(make_http(failing)).embed(["a"])
    assert caught.value.code == "internal_error"


def test_a_400_is_not_retried_and_keeps_the_endpoint_code() -> None:
    endpoint = Endpoint(error(422, "empty_texts"))
    with pytest.raises(InvalidInput) as caught:
        embedder(make_http(endpoint)).embed(["a"])
    assert caught.value.code == "empty_texts"
    assert len(endpoint.requests) == 1


def test_a_413_is_payload_too_large() -> None:
    endpoint = Endpoint(error(413, "too_many_texts"))
    with pytest.raises(PayloadTooLarge) as caught:
        embedder(make_http(endpoint)).embed(["a"])
    assert caught.value.code == "too_many_texts"


def test_the_breaker_opens_after_failures_and_then_fails_fast() -> None:
    endpoint = Endpoint(*[error(503, "out_of_memory")] * 10)
    breaker = CircuitBreaker("gpu", failure_threshold=3, reset_timeout_s=30)
    client = embedder(make_http(endpoint, retries=0, breaker=breaker))
    for _ in range(3):
        with pytest.raises(DependencyUnavailable):
            client.embed(["a"])
    assert breaker.state is BreakerState.OPEN

    with pytest.raises(CircuitOpenError) as caught:
        client.embed(["a"])
    assert caught.value.code == "circuit_open"
    assert len(endpoint.requests) == 3  # the fourth call never reached the endpoint


def test_an_open_breaker_stops_the_retries_at_once() -> None:
    endpoint = Endpoint(*[httpx.ConnectError("refused")] * 10)
    breaker = CircuitBreaker("gpu", failure_threshold=2, reset_timeout_s=30)
    sleeps: list[float] = []
    with pytest.raises(CircuitOpenError):
        embedder(make_http(endpoint, retries=5, breaker=breaker, sleeps=sleeps)).embed(["a"])
    assert len(endpoint.requests) == 2
    assert len(sleeps) == 2  # the third attempt found the breaker open and did not wait again


def test_half_open_recovery_closes_the_breaker_after_a_successful_trial() -> None:
    clock = FakeClock()
    endpoint = Endpoint(*[error(502, "bad_gateway")] * 2)  # then healthy
    breaker = CircuitBreaker("gpu", failure_threshold=2, reset_timeout_s=30, clock=clock)
    client = embedder(make_http(endpoint, retries=0, breaker=breaker))
    for _ in range(2):
        with pytest.raises(DependencyUnavailable):
            client.embed(["a"])
    with pytest.raises(CircuitOpenError):
        client.embed(["a"])

    clock.now += 30
    assert breaker.state is BreakerState.HALF_OPEN
    assert client.embed(["a"]).shape == (1, 3)
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_trial_opens_the_breaker_again() -> None:
    clock = FakeClock()
    endpoint = Endpoint(*[httpx.ConnectError("refused")] * 3)
    breaker = CircuitBreaker("gpu", failure_threshold=2, reset_timeout_s=30, clock=clock)
    client = embedder(make_http(endpoint, retries=0, breaker=breaker))
    for _ in range(2):
        with pytest.raises(DependencyUnavailable):
            client.embed(["a"])
    clock.now += 30
    with pytest.raises(DependencyUnavailable) as caught:
        client.embed(["a"])
    assert caught.value.code == "model_unavailable"
    assert breaker.state is BreakerState.OPEN


def test_a_4xx_does_not_count_against_the_breaker() -> None:
    endpoint = Endpoint(*[error(422, "empty_texts")] * 5)
    breaker = CircuitBreaker("gpu", failure_threshold=2)
    client = embedder(make_http(endpoint, breaker=breaker))
    for _ in range(5):
        with pytest.raises(InvalidInput):
            client.embed(["a"])
    assert breaker.state is BreakerState.CLOSED


def test_no_reranker_on_the_endpoint_is_neither_retried_nor_held_against_it() -> None:
    endpoint = Endpoint(*[error(503, "model_unavailable")] * 5)
    breaker = CircuitBreaker("gpu", failure_threshold=2)
    reranker = GpuEndpointReranker(make_http(endpoint, breaker=breaker))
    for _ in range(3):
        with pytest.raises(DependencyUnavailable) as caught:
            reranker.rerank("q", ["p"])
        assert caught.value.code == "model_unavailable"
    assert len(endpoint.requests) == 3
    assert breaker.state is BreakerState.CLOSED


def test_the_embedder_splits_large_inputs_and_checks_shapes() -> None:
    endpoint = Endpoint()
    vectors = embedder(make_http(endpoint), max_texts_per_request=4).embed(["t"] * 10)
    assert vectors.shape == (10, 3)
    assert [len(json.loads(r.content)["texts"]) for r in endpoint.requests] == [4, 4, 2]
    assert json.loads(endpoint.requests[0].content)["model"] == "m"
    assert embedder(make_http(endpoint)).embed([]).shape == (0, 3)

    wrong = Endpoint(httpx.Response(200, json={"vectors": [[1.0, 0.0]]}))
    with pytest.raises(DependencyUnavailable) as caught:
        embedder(make_http(wrong)).embed(["a"])
    assert caught.value.code == "bad_model_response"


def test_the_reranker_returns_one_score_per_passage() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(200, json={"scores": [float(len(p)) for p in body["passages"]]})

    reranker = GpuEndpointReranker(make_http(answer), max_passages_per_request=2)
    assert reranker.rerank("q", ["a", "bbb", "cc"]) == [1.0, 3.0, 2.0]
    assert reranker.rerank("q", []) == []

    broken = GpuEndpointReranker(make_http(lambda _r: httpx.Response(200, json={"scores": [1]})))
    with pytest.raises(DependencyUnavailable):
        broken.rerank("q", ["a", "b"])


def test_the_ocr_adapter_sends_a_png_and_reads_the_lines() -> None:
    seen: list[Image.Image] = []

    def answer(request: httpx.Request) -> httpx.Response:
        data = base64.b64decode(json.loads(request.content)["image_base64"])
        seen.append(Image.open(io.BytesIO(data)))
        line = {"text": "Quarry", "box": [1, 2, 30, 12], "score": 0.93}
        return httpx.Response(200, json={"lines": [line], "text": "Quarry"})

    lines = GpuEndpointOcr(make_http(answer)).recognize(Image.new("L", (40, 20), 255))

    assert seen[0].format == "PNG"
    assert seen[0].size == (40, 20)
    assert [(x.text, x.box, x.score) for x in lines] == [("Quarry", (1.0, 2.0, 30.0, 12.0), 0.93)]

    broken = GpuEndpointOcr(make_http(lambda _r: httpx.Response(200, json={"lines": [{}]})))
    with pytest.raises(DependencyUnavailable):
        broken.recognize(Image.new("L", (4, 4)))


def test_a_url_builds_an_http_client_of_its_own() -> None:
    adapter = GpuEndpointEmbedder("http://gpu.invalid/", model_name="m")
    assert adapter.model_name == "m"
    assert adapter.dimension == 384
