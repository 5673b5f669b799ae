"""``QUARRY_SAGA_RUNNER=stepfunctions``: ingestion records the run, then starts it as an execution
of the compiled ingestion state machine (moto records it without running it)."""

from __future__ import annotations

import copy
import json
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from shared.adapters.stepfunctions_saga_launcher import StepFunctionsSagaLauncher
from shared.container import Container
from shared.db.migrate import upgrade
from shared.db.models import KnowledgeBase
from shared.db.saga_store import SqlSagaRunStore
from shared.errors import ConfigurationError, DependencyUnavailable
from shared.ingestion.saga import IngestionDeps, IngestionSteps
from shared.ingestion.service import Upload
from shared.ingestion.storage_events import handle_storage_event
from shared.sagas.asl import client_error_names, compile_saga
from shared.sagas.definition import SagaDefinition
from shared.settings import Settings
from tests.events import load_event
from tests.fixtures.aws import REGION
from tests.fixtures.moto_lambda import create_role

pytestmark = pytest.mark.integration

FUNCTION_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:quarry-dev-ingestion"
TEXT = b"Quarry keeps the invoices of the Basel office for ten years."


def ingestion_definition() -> SagaDefinition:
    return IngestionSteps(cast(IngestionDeps, None)).definition()


@pytest.fixture
def state_machine(aws_credentials: None) -> Iterator[str]:
    """The ingestion state machine, compiled as the CDK app compiles it."""
    with mock_aws():
        asl = compile_saga(
            ingestion_definition(), FUNCTION_ARN, non_retryable_errors=client_error_names()
        )
        machine = boto3.client("stepfunctions").create_state_machine(
            name="quarry-dev-ingestion", definition=json.dumps(asl), roleArn=create_role("saga")
        )
        yield machine["stateMachineArn"]


@pytest.fixture
async def container(
    make_settings: Callable[..., Settings], database_url: str, state_machine: str
) -> AsyncIterator[Container]:
    settings = make_settings(
        db={"url": database_url},
        saga_runner="stepfunctions",
        aws={"saga_state_machine_arn": state_machine, "region": REGION},
    )
    upgrade(settings.database_url)
    c = Container(settings)
    try:
        yield c
    finally:
        await c.aclose()


def only_execution(state_machine: str) -> dict[str, Any]:
    """The one execution of the state machine: its name, status and input."""
    sfn = boto3.client("stepfunctions")
    (found,) = sfn.list_executions(stateMachineArn=state_machine)["executions"]
    described: dict[str, Any] = sfn.describe_execution(executionArn=found["executionArn"])
    return described


async def test_an_upload_starts_an_execution_named_after_its_run(
    container: Container, tenant: uuid.UUID, kb: KnowledgeBase, state_machine: str
) -> None:
    result = await container.ingestion_service.ingest_uploads(
        tenant, kb.id, [Upload("retention.txt", TEXT)]
    )
    run = result.run
    assert run is not None
    assert run.status == "running"
    assert result.failures == []

    started = only_execution(state_machine)
    assert started["name"] == str(run.id)
    assert started["status"] == "RUNNING"
    state = json.loads(started["input"])["state"]
    assert state["run_id"] == str(run.id)
    assert (state["tenant_id"], state["kb_id"]) == (str(tenant), str(kb.id))
    assert [item["name"] for item in state["items"]] == ["retention.txt"]
    assert await container.blob_store.get(state["items"][0]["blob_key"]) == TEXT

    recorded = await container.ingestion_service.get_run(tenant, kb.id, run.id)
    assert recorded.status == "running"
    assert set(recorded.step_status) == {s.name for s in ingestion_definition().steps}


async def test_an_s3_upload_is_reported_started(
    container: Container, tenant: uuid.UUID, kb: KnowledgeBase, state_machine: str
) -> None:
    key = f"tenants/{tenant}/kbs/{kb.id}/retention.txt"
    await container.blob_store.put(key, TEXT)
    event = copy.deepcopy(load_event("s3_object_created"))
    event["Records"][0]["s3"]["object"]["key"] = urllib.parse.quote_plus(key, safe="/")
    outcome = await handle_storage_event(
        event,
        kbs=container.kb_service,
        repository=container.kb_repository,
        ingestion=container.ingestion_service,
    )
    assert (outcome.started, outcome.ingested, outcome.failed) == (["retention.txt"], [], [])
    state = json.loads(only_execution(state_machine)["input"])["state"]
    assert [item["blob_key"] for item in state["items"]] == [key]


def stubbed_launcher(container: Container, state_machine: str) -> tuple[Any, Stubber]:
    client = boto3.client("stepfunctions")
    launcher = StepFunctionsSagaLauncher(
        SqlSagaRunStore(container.database), state_machine, saga="ingestion", client=client
    )
    return launcher, Stubber(client)


async def test_an_execution_that_exists_already_counts_as_started(
    container: Container, tenant: uuid.UUID, kb: KnowledgeBase, state_machine: str
) -> None:
    launcher, stub = stubbed_launcher(container, state_machine)
    expected = {"stateMachineArn": state_machine, "name": ANY, "input": ANY}
    stub.add_client_error(
        "start_execution", service_error_code="ExecutionAlreadyExists", expected_params=expected
    )
    with stub:
        run = await launcher.start(
            ingestion_definition(), tenant_id=tenant, kb_id=kb.id, state={"items": []}
        )
    assert run.status == "running"


async def test_a_run_that_cannot_start_is_recorded_failed(
    container: Container, tenant: uuid.UUID, kb: KnowledgeBase, state_machine: str
) -> None:
    launcher, stub = stubbed_launcher(container, state_machine)
    stub.add_client_error("start_execution", service_error_code="StateMachineDoesNotExist")
    with stub, pytest.raises(DependencyUnavailable) as caught:
        await launcher.start(
            ingestion_definition(), tenant_id=tenant, kb_id=kb.id, state={"items": []}
        )
    assert caught.value.code == "saga_not_started"
    run = await SqlSagaRunStore(container.database).load(uuid.UUID(caught.value.details["run_id"]))
    assert run is not None
    assert (run.status, run.error_code) == ("failed", "saga_not_started")
    assert run.state["run_id"] == str(run.id)  # resumable in-process


async def test_the_state_machine_runs_one_saga_only(
    container: Container, tenant: uuid.UUID, state_machine: str
) -> None:
    launcher, _stub = stubbed_launcher(container, state_machine)
    other = SagaDefinition("workflow", ingestion_definition().steps)
    with pytest.raises(ConfigurationError, match="runs the ingestion saga"):
        await launcher.start(other, tenant_id=tenant, kb_id=None, state={})
