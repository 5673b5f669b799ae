from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from shared.adapters.gpu_endpoint_client import GpuEndpointClient
from shared.container import Container
from shared.errors import ConfigurationError
from shared.health import check_readiness
from shared.settings import Settings

pytestmark = pytest.mark.unit


def test_nothing_is_built_until_used(make_settings: Callable[..., Settings]) -> None:
    container = Container(make_settings())
    assert "database" not in container.__dict__
    assert "vector_store" not in container.__dict__


async def test_workflow_runs_execute_where_the_sagas_run(
    make_settings: Callable[..., Settings],
) -> None:
    local = Container(make_settings())
    assert local.runs_workflows_in_process
    assert local.workflow_service is not None
    cloud = Container(make_settings(saga_runner="stepfunctions", aws={"region": "eu-west-1"}))
    assert not cloud.runs_workflows_in_process
    with pytest.raises(ConfigurationError, match="QUARRY_AWS__WORKFLOW_STATE_MACHINE_PREFIX"):
        _ = cloud.workflow_service  # runs go to Step Functions, which is not configured
    await local.aclose()
    await cloud.aclose()


async def test_health_checks_follow_the_settings(make_settings: Callable[..., Settings]) -> None:
    local = Container(make_settings())
    assert [c.name for c in local.health_checks()] == ["database", "vector_store", "models"]
    remote = Container(
        make_settings(
            cache={"redis_url": "redis://127.0.0.1:1/0"},
            models={"provider": "gpu_endpoint", "gpu_endpoint_url": "http://gpu.invalid"},
        )
    )
    names = {c.name: c.required for c in remote.health_checks()}
    assert names == {"database": True, "vector_store": True, "redis": False, "models": True}
    await local.aclose()
    await remote.aclose()


async def test_gpu_endpoint_health_uses_http() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.url.path == "/health" else 404, json={})

    client = GpuEndpointClient("http://gpu.test/", transport=httpx.MockTransport(answer))
    await client.health()
    await client.aclose()

    failing = GpuEndpointClient(
        "http://gpu.test", transport=httpx.MockTransport(lambda _r: httpx.Response(503))
    )
    with pytest.raises(httpx.HTTPStatusError):
        await failing.health()
    await failing.aclose()


async def test_readiness_reports_an_unreachable_gpu_endpoint(
    make_settings: Callable[..., Settings],
) -> None:
    container = Container(
        make_settings(models={"provider": "gpu_endpoint", "gpu_endpoint_url": "http://127.0.0.1:1"})
    )
    report = await check_readiness(container.health_checks(), timeout_s=3)
    models = next(c for c in report.components if c.name == "models")
    assert models.status == "down"
    await container.aclose()
