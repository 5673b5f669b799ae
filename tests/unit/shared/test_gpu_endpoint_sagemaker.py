"""The GPU endpoint on SageMaker (botocore Stubber): the /invocations payloads, the error
mapping onto retries / breaker / InvalidInput, the readiness probe, the container's choice."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from shared.adapters.circuit_breaker import (
    CIRCUIT_OPEN_METRIC,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)
from shared.adapters.gpu_endpoint_embedder import GpuEndpointEmbedder
from shared.adapters.gpu_endpoint_reranker import GpuEndpointReranker
from shared.adapters.gpu_endpoint_sagemaker import GpuEndpointSageMaker
from shared.adapters.gpu_endpoint_transport import GPU_ENDPOINT_BREAKER
from shared.container import Container
from shared.errors import DependencyUnavailable, InvalidInput, PayloadTooLarge
from shared.observability.metrics import PrometheusMetrics
from shared.settings import Settings

pytestmark = pytest.mark.unit

ENDPOINT = "quarry-dev-gpu"
COMPONENT = "quarry-dev-gpu-models"
# What SageMaker answers while an inference component has no copy running (scaled to zero).
NO_CAPACITY = (
    "Inference Component has no capacity to process this request. ApplicationAutoScaling may "
    "be in-progress (if configured) or try to increase the capacity by invoking "
    "UpdateInferenceComponentRuntimeConfig API."
)


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "sagemaker-runtime",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def answer(body: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    return {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"}


def invocation(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "EndpointName": ENDPOINT,
        "ContentType": "application/json",
        "Accept": "application/json",
        "Body": json.dumps(payload, separators=(",", ":")).encode(),
    }


def model_error(stub: Stubber, status: int, code: str) -> None:
    stub.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message=f"Received client error ({status}) from primary",
        http_status_code=424,
        modeled_fields={
            "OriginalStatusCode": status,
            "OriginalMessage": json.dumps({"code": code, "message": f"{code} happened"}),
        },
    )


def sagemaker(
    client: Any,
    *,
    retries: int = 2,
    breaker: CircuitBreaker | None = None,
    inference_component: str | None = None,
) -> GpuEndpointSageMaker:
    return GpuEndpointSageMaker(
        ENDPOINT,
        inference_component=inference_component,
        client=client,
        retries=retries,
        breaker=breaker or CircuitBreaker("gpu", failure_threshold=100),
        sleep=lambda _s: None,
    )


def test_embeddings_are_an_embed_task_on_invocations(client: Any, stub: Stubber) -> None:
    stub.add_response(
        "invoke_endpoint",
        answer({"model": "m", "dimension": 3, "vectors": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]}),
        invocation({"task": "embed", "texts": ["a", "b"], "model": "m"}),
    )
    vectors = GpuEndpointEmbedder(sagemaker(client), model_name="m", dimension=3).embed(["a", "b"])
    assert vectors.shape == (2, 3)


def test_reranking_is_a_rerank_task(client: Any, stub: Stubber) -> None:
    stub.add_response(
        "invoke_endpoint",
        answer({"model": "ce", "scores": [0.2, 0.9]}),
        invocation({"task": "rerank", "query": "q", "passages": ["x", "y"]}),
    )
    assert GpuEndpointReranker(sagemaker(client)).rerank("q", ["x", "y"]) == [0.2, 0.9]


def test_an_endpoint_that_scales_to_zero_is_called_with_its_inference_component(
    client: Any, stub: Stubber
) -> None:
    stub.add_response(
        "invoke_endpoint",
        answer({"model": "ce", "scores": [0.5]}),
        {
            **invocation({"task": "rerank", "query": "q", "passages": ["x"]}),
            "InferenceComponentName": COMPONENT,
        },
    )
    reranker = GpuEndpointReranker(sagemaker(client, inference_component=COMPONENT))
    assert reranker.rerank("q", ["x"]) == [0.5]


def test_no_capacity_is_an_unavailable_endpoint_not_a_bad_request(
    client: Any, stub: Stubber
) -> None:
    """Scaled to zero, SageMaker refuses the call as a ValidationError: retried, held against
    the breaker, then ``DependencyUnavailable`` (queries degrade on it), never InvalidInput."""
    breaker = CircuitBreaker("gpu", failure_threshold=3)
    for _ in range(3):
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ValidationError",
            service_message=NO_CAPACITY,
            http_status_code=400,
        )
    endpoint = sagemaker(client, breaker=breaker, inference_component=COMPONENT)
    with pytest.raises(DependencyUnavailable) as caught:
        endpoint.post("/embed", {"texts": ["a"]})
    assert caught.value.code == "model_no_capacity"
    assert caught.value.details == {"attempts": 3}
    assert breaker.state is BreakerState.OPEN


def test_a_4xx_from_the_model_service_is_invalid_input_and_not_a_failure(
    client: Any, stub: Stubber
) -> None:
    model_error(stub, 422, "empty_texts")
    breaker = CircuitBreaker("gpu", failure_threshold=1)
    with pytest.raises(InvalidInput) as caught:
        sagemaker(client, breaker=breaker).post("/embed", {"texts": [""]})
    assert caught.value.code == "empty_texts"
    assert breaker.state is BreakerState.CLOSED


def test_a_5xx_from_the_model_service_is_retried(client: Any, stub: Stubber) -> None:
    model_error(stub, 503, "out_of_memory")
    stub.add_response("invoke_endpoint", answer({"vectors": []}))
    assert sagemaker(client).post("/embed", {"texts": []}) == {"vectors": []}


@pytest.mark.parametrize(
    ("error_code", "http_status", "code"),
    [
        ("ThrottlingException", 400, "model_throttled"),
        ("ModelNotReadyException", 429, "model_unavailable"),
        ("ServiceUnavailable", 503, "model_unavailable"),
        ("InternalFailure", 500, "model_unavailable"),
    ],
)
def test_throttling_and_server_errors_are_retried_then_unavailable(
    client: Any, stub: Stubber, error_code: str, http_status: int, code: str
) -> None:
    for _ in range(3):
        stub.add_client_error(
            "invoke_endpoint", service_error_code=error_code, http_status_code=http_status
        )
    with pytest.raises(DependencyUnavailable) as caught:
        sagemaker(client).post("/ocr", {"image_base64": "AA=="})
    assert caught.value.code == code
    assert caught.value.details == {"attempts": 3}


def test_a_request_sagemaker_refuses_is_the_callers(client: Any, stub: Stubber) -> None:
    stub.add_client_error(
        "invoke_endpoint", service_error_code="ValidationError", http_status_code=400
    )
    with pytest.raises(InvalidInput) as caught:
        sagemaker(client).post("/embed", {"texts": ["a"]})
    assert caught.value.code == "invalid_model_request"

    stub.add_client_error(
        "invoke_endpoint", service_error_code="ValidationError", http_status_code=413
    )
    with pytest.raises(PayloadTooLarge):
        sagemaker(client).post("/embed", {"texts": ["a"]})


def test_failures_open_the_breaker_and_count_a_circuit_open(client: Any, stub: Stubber) -> None:
    metrics = PrometheusMetrics()
    breaker = CircuitBreaker(
        GPU_ENDPOINT_BREAKER, failure_threshold=2, reset_timeout_s=30, metrics=metrics
    )
    endpoint = sagemaker(client, retries=0, breaker=breaker)
    for _ in range(2):
        stub.add_client_error(
            "invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400
        )
        with pytest.raises(DependencyUnavailable):
            endpoint.post("/embed", {"texts": ["a"]})
    with pytest.raises(CircuitOpenError):
        endpoint.post("/embed", {"texts": ["a"]})  # never reaches SageMaker
    assert metrics.counter_value(CIRCUIT_OPEN_METRIC, endpoint=GPU_ENDPOINT_BREAKER) == 1


async def test_the_readiness_probe_embeds_one_text(client: Any, stub: Stubber) -> None:
    stub.add_response(
        "invoke_endpoint",
        answer({"model": "m", "dimension": 3, "vectors": [[1.0, 0.0, 0.0]]}),
        invocation({"task": "embed", "texts": ["ping"]}),
    )
    await sagemaker(client).health()
    model_error(stub, 503, "model_loading")
    with pytest.raises(DependencyUnavailable, match="503"):
        await sagemaker(client).health()


def test_the_container_calls_sagemaker_when_the_endpoint_has_a_name(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        models={"provider": "gpu_endpoint", "gpu_endpoint_url": "https://runtime.example/x"},
        aws={"gpu_endpoint_name": ENDPOINT, "region": "eu-west-1"},
    )
    container = Container(settings)
    assert isinstance(container.gpu_transport, GpuEndpointSageMaker)
    assert container.gpu_transport is container.gpu_sagemaker
    assert container.gpu_transport.breaker.name == GPU_ENDPOINT_BREAKER
    models = next(c for c in container.health_checks() if c.name == "models")
    assert models.probe == container.gpu_sagemaker.health
    assert "gpu_endpoint" not in container.__dict__  # no HTTP health client
    assert container.gpu_sagemaker.inference_component is None


def test_the_container_names_the_inference_component_when_set(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        models={"provider": "gpu_endpoint"},
        aws={
            "gpu_endpoint_name": ENDPOINT,
            "gpu_inference_component": COMPONENT,
            "region": "eu-west-1",
        },
    )
    endpoint = Container(settings).gpu_sagemaker
    assert endpoint is not None
    assert (endpoint.endpoint_name, endpoint.inference_component) == (ENDPOINT, COMPONENT)
