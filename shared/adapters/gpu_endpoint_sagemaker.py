"""The GPU endpoint as a SageMaker real-time endpoint: SigV4-signed ``invoke_endpoint`` calls.

Each call posts the SageMaker ``/invocations`` payload that ``gpu_endpoint.app`` serves: the
route's body plus its ``task`` (``{"task": "embed", "texts": [...]}``); on an endpoint that
scales to zero the models are an inference component, which each call names
(``InferenceComponentName``). boto3 does the signing with the function's role
(``sagemaker:InvokeEndpoint``); its own retries are off, the transport retries
(``gpu_endpoint_transport``). How SageMaker's answers map onto the transport's:

- ``ModelError``: the container answered non-2xx; its status and JSON body (``OriginalStatusCode``,
  ``OriginalMessage``) are the answer, so a 422 from the model service is ``InvalidInput`` with
  the service's code and a 503 a retried breaker failure, exactly as over HTTP.
- ``ValidationError`` (a request SageMaker refuses) is the caller's: ``InvalidInput``; a 413 is
  ``PayloadTooLarge`` (SageMaker takes 6 MB at most). Except "Inference Component has no
  capacity": the component is scaled to zero (or still starting), a failure of the endpoint
  (``model_no_capacity``) that also wakes it (SageMaker counts it as
  ``NoCapacityInvocationFailures``, whose alarm adds a copy).
- Anything else (throttling, ``ModelNotReadyException``, 5xx, timeouts, no connection, denied
  access) is a failure of the endpoint: retried and held against the breaker.

boto3 is synchronous, like the transport: callers already run model calls in worker threads, and
``health`` (async) moves its call to one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from shared.adapters.circuit_breaker import CircuitBreaker
from shared.adapters.gpu_endpoint_transport import (
    EndpointReply,
    GpuEndpointTransport,
    TransientFailure,
)
from shared.errors import DependencyUnavailable

CONTENT_TYPE = "application/json"
# The transport's paths and the ``task`` the /invocations route dispatches on.
TASKS = {"/embed": "embed", "/rerank": "rerank", "/ocr": "ocr"}
HEALTH_TEXT = "ping"  # what the readiness probe embeds: one short text, a millisecond of GPU
# How SageMaker words the ValidationError of an inference component that has no copy running.
NO_CAPACITY_MESSAGE = "no capacity"


class GpuEndpointSageMaker(GpuEndpointTransport):
    def __init__(
        self,
        endpoint_name: str,
        *,
        inference_component: str | None = None,
        region: str | None = None,
        client: Any = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        retries: int = 2,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 2.0,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``inference_component``: the component that holds the models, named in each call
        (an endpoint that scales to zero). ``client``: a boto3 ``sagemaker-runtime`` client,
        built from ``region`` when None."""
        self.endpoint_name = endpoint_name
        self.inference_component = inference_component
        self._target: dict[str, str] = {"EndpointName": endpoint_name}
        if inference_component:
            self._target["InferenceComponentName"] = inference_component
        super().__init__(
            breaker=breaker or CircuitBreaker(f"sagemaker endpoint {endpoint_name}"),
            retries=retries,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            sleep=sleep,
        )
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "sagemaker-runtime",
                region_name=region,
                config=Config(
                    read_timeout=timeout_s,
                    connect_timeout=min(connect_timeout_s, timeout_s),
                    retries={"total_max_attempts": 1},
                ),
            )
        self._client: Any = client

    async def health(self) -> None:
        """One small embedding, outside the breaker and without retries (a readiness probe)."""
        reply = await asyncio.to_thread(self._send, "/embed", {"texts": [HEALTH_TEXT]})
        if not 200 <= reply.status < 300:
            raise DependencyUnavailable(
                f"the SageMaker endpoint {self.endpoint_name} answered {reply.status}",
                code=str(reply.body.get("code") or "model_unavailable"),
            )

    def _send(self, path: str, payload: dict[str, Any]) -> EndpointReply:
        body = json.dumps({"task": TASKS[path], **payload}, separators=(",", ":"))
        try:
            response = self._client.invoke_endpoint(
                **self._target,
                ContentType=CONTENT_TYPE,
                Accept=CONTENT_TYPE,
                Body=body.encode(),
            )
        except ClientError as exc:
            return _error_reply(exc)
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise TransientFailure(f"timed out ({type(exc).__name__})", "model_timeout") from exc
        except BotoCoreError as exc:
            raise TransientFailure(f"unreachable ({exc!r})", "model_unavailable") from exc
        return EndpointReply(200, _json_object(response["Body"].read()))


def _error_reply(exc: ClientError) -> EndpointReply:
    response: dict[str, Any] = dict(exc.response)
    error = response.get("Error", {})
    code = str(error.get("Code", "ClientError"))
    message = str(error.get("Message", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)
    if code == "ModelError":
        original = response.get("OriginalStatusCode")
        body = response.get("OriginalMessage") or ""
        return EndpointReply(int(original) if original else 500, _json_object(body.encode()))
    if status == 413:
        return EndpointReply(413, {"code": "payload_too_large", "message": message})
    if code == "ValidationError" and NO_CAPACITY_MESSAGE in message.lower():
        raise TransientFailure(f"SageMaker {code}: {message}", "model_no_capacity") from exc
    if code == "ValidationError":
        return EndpointReply(400, {"code": "invalid_model_request", "message": message})
    reason = "model_throttled" if code == "ThrottlingException" else "model_unavailable"
    raise TransientFailure(f"SageMaker {code}: {message}", reason) from exc


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
