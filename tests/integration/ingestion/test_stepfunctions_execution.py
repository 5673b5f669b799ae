"""The compiled ingestion state machine executed by moto's Step Functions interpreter
(``execute_state_machine``), every task run by the real task runner, compared with the in-process
runner: a run on Step Functions records its steps and ends as a local run does.

How the tasks reach the runner: moto invokes each Lambda task through its mocked Lambda API, and
``tests.fixtures.moto_lambda`` routes those invocations to what the ingestion function does with a
saga task (``run_task`` over the container's saga definition and run store); an exception comes
back as a function error named by its class, as Lambda reports it. moto runs the machine in
threads of its own; all async work (database, blobs, vectors) runs on one event loop in a thread
of its own (``LoopThread``) that the tasks and the test share.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import boto3
import pytest

from shared.container import Container
from shared.db.migrate import upgrade
from shared.db.models import KnowledgeBase
from shared.ingestion.saga import IngestionDeps, IngestionSteps, run_prefix
from shared.ingestion.service import IngestionService, Upload
from shared.kb.service import KbSpec
from shared.sagas.asl import client_error_names, compile_saga
from shared.sagas.definition import SagaDefinition
from shared.sagas.runner import SagaRunner, SagaRunRecord
from shared.sagas.task import run_task
from shared.settings import Settings
from tests.fixtures.aws import REGION
from tests.fixtures.event_loop_thread import LoopThread
from tests.fixtures.moto_lambda import (
    create_placeholder_function,
    create_role,
    executing_mock_aws,
    route_invokes,
)
from tests.fixtures.search import search
from tests.integration.ingestion.conftest import failing_at, snapshot

pytestmark = pytest.mark.integration

FUNCTION = "quarry-test-ingestion"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}"
STEPS = ["extract", "register", "chunk", "embed", "index", "publish"]
ARTIFACTS = ("extracted.json", "chunks.json", "embeddings.npy")
GUIDE = b"""# Travel policy

## Hotels
The nightly hotel budget in Zurich is 240 francs, breakfast included.
"""
NOTES = b"The quarterly offsite takes place in Lisbon. Bring a passport."


@dataclass
class Execution:
    status: str
    entered: list[str]  # the states entered, in order


@dataclass
class World:
    loop: LoopThread
    container: Container
    tenant: uuid.UUID
    machine: str

    @property
    def service(self) -> IngestionService:
        return self.container.ingestion_service

    def new_kb(self, name: str) -> KnowledgeBase:
        spec = KbSpec(name=name, chunk_size_tokens=64, chunk_overlap_tokens=8)
        return self.loop.run(self.container.kb_service.create(self.tenant, spec))

    def deploy(self, definition: SagaDefinition) -> None:
        """``definition`` is what the function runs and what the machine is compiled from."""
        self.service.definition = definition
        asl = compile_saga(definition, FUNCTION_ARN, non_retryable_errors=client_error_names())
        boto3.client("stepfunctions", region_name=REGION).update_state_machine(
            stateMachineArn=self.machine, definition=json.dumps(asl)
        )

    def on_stepfunctions(
        self, kb: KnowledgeBase, uploads: list[Upload]
    ) -> tuple[SagaRunRecord, Execution]:
        """Starts the run (the service's launcher: Step Functions) and waits for its end."""
        started = self.loop.run(self.service.ingest_uploads(self.tenant, kb.id, uploads)).run
        assert started is not None
        assert started.status == "running"
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = f"{self.machine.replace(':stateMachine:', ':execution:')}:{started.id}"
        deadline = time.monotonic() + 300
        while True:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        history = sfn.get_execution_history(executionArn=arn)["events"]
        entered = [
            e["stateEnteredEventDetails"]["name"]
            for e in history
            if "stateEnteredEventDetails" in e
        ]
        run = self.loop.run(self.service.get_run(self.tenant, kb.id, started.id))
        return run, Execution(described["status"], entered)

    def locally(self, kb: KnowledgeBase, uploads: list[Upload]) -> SagaRunRecord:
        """The same service and definition on the in-process runner."""
        runner = SagaRunner(self.container.saga_run_store)
        local = IngestionService(
            steps=self.service.steps,
            runner=runner,
            launcher=runner,
            kbs=self.container.kb_repository,
            repository=self.container.ingestion_repository,
            max_file_bytes=self.container.settings.ingestion.max_file_bytes,
        )
        local.definition = self.service.definition
        run = self.loop.run(local.ingest_uploads(self.tenant, kb.id, uploads)).run
        assert run is not None
        return run

    def documents(self, kb: KnowledgeBase) -> dict[str, tuple[str, str | None]]:
        docs = self.loop.run(self.container.kb_repository.list_documents(self.tenant, kb.id))
        return {d.name: (d.status, d.error_code) for d in docs}

    def artifacts(self, kb: KnowledgeBase, run: SagaRunRecord) -> list[str]:
        """The run's private artifacts still in the blob store."""
        prefix = run_prefix(str(self.tenant), str(kb.id), str(run.id))
        blobs = self.container.blob_store
        return [name for name in ARTIFACTS if self.loop.run(blobs.exists(prefix + name))]


@pytest.fixture
def world(
    make_settings: Callable[..., Settings],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    aws_credentials: None,
) -> Iterator[World]:
    loop = LoopThread()
    try:
        with executing_mock_aws():
            role = create_role("saga")
            create_placeholder_function(FUNCTION, role)
            asl = compile_saga(
                IngestionSteps(cast(IngestionDeps, None)).definition(),
                FUNCTION_ARN,
                non_retryable_errors=client_error_names(),
            )
            machine = boto3.client("stepfunctions").create_state_machine(
                name="quarry-test-ingestion", definition=json.dumps(asl), roleArn=role
            )["stateMachineArn"]
            settings = make_settings(
                db={"url": database_url},
                saga_runner="stepfunctions",
                aws={"saga_state_machine_arn": machine, "region": REGION},
            )
            upgrade(settings.database_url)
            container = Container(settings)
            tenant_name = f"tenant-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared
            tenant = loop.run(container.kb_repository.ensure_tenant(tenant_name))
            built = World(loop, container, tenant, machine)

            def ingestion_function(task: Any) -> Any:
                """The ingestion function on a saga task (``functions.ingestion.handler``)."""
                definition = container.ingestion_service.definition
                return loop.run(run_task(definition, task, container.saga_run_store))

            route_invokes(monkeypatch, ingestion_function, function_errors=(Exception,))
            try:
                yield built
            finally:
                loop.run(container.aclose())
    finally:
        loop.close()


def test_a_run_records_its_steps_publishes_and_drops_its_artifacts(world: World) -> None:
    kb = world.new_kb("handbook")
    uploads = [Upload("policy/travel.md", GUIDE), Upload("notes.txt", NOTES)]
    run, execution = world.on_stepfunctions(kb, uploads)
    assert execution.status == "SUCCEEDED", execution
    assert execution.entered == [*STEPS, "RecordSuccess", "Succeeded"]
    # What GET /v1/kbs/{kb}/runs/{id} shows.
    assert (run.status, run.error_code, run.error_message) == ("succeeded", None, None)
    assert run.step_status == dict.fromkeys(STEPS, "succeeded")
    assert run.state["published"] == 2
    assert world.documents(kb) == {
        "policy/travel.md": ("ready", None),
        "notes.txt": ("ready", None),
    }
    hits = world.loop.run(search(world.container, world.tenant, kb, "hotel budget in Zurich"))
    assert hits[0].chunk.document == "policy/travel.md"
    assert world.artifacts(kb, run) == []


@pytest.mark.parametrize(("step", "compensations"), [("register", []), ("index", ["index"])])
def test_a_failed_step_ends_the_run_as_the_in_process_runner_does(
    world: World, step: str, compensations: list[str]
) -> None:
    healthy = world.service.definition
    cloud_kb, local_kb = world.new_kb("cloud"), world.new_kb("local")
    world.on_stepfunctions(cloud_kb, [Upload("notes.txt", NOTES)])
    world.locally(local_kb, [Upload("notes.txt", NOTES)])
    before = world.loop.run(snapshot(world.container, world.tenant, cloud_kb))
    version_before = world.loop.run(world.container.kb_service.get(world.tenant, "cloud")).version

    world.deploy(failing_at(healthy, step))
    local = world.locally(local_kb, [Upload("policy/travel.md", GUIDE)])
    cloud, execution = world.on_stepfunctions(cloud_kb, [Upload("policy/travel.md", GUIDE)])

    assert execution.status == "FAILED"
    ran = STEPS[: STEPS.index(step) + 1]
    undone = [f"compensate_{name}" for name in compensations]
    assert execution.entered == [*ran, *undone, "Outcome", "RecordCompensated", "Failed"]
    assert (cloud.status, cloud.error_code, cloud.error_message) == (
        "compensated",
        "dependency_unavailable",
        f"{step}: DependencyUnavailable: injected failure in {step}",
    )
    assert (cloud.status, cloud.error_code, cloud.error_message) == (
        local.status,
        local.error_code,
        local.error_message,
    )
    assert cloud.step_status == local.step_status
    assert cloud.step_status[step] == ("compensated" if compensations else "failed")
    # The documents it was processing are failed, with the run's error; the KB is unchanged.
    assert world.documents(cloud_kb) == world.documents(local_kb)
    assert world.documents(cloud_kb)["policy/travel.md"] == ("failed", "dependency_unavailable")
    assert world.loop.run(snapshot(world.container, world.tenant, cloud_kb)) == before
    kb_after = world.loop.run(world.container.kb_service.get(world.tenant, "cloud"))
    assert kb_after.version == version_before
    # Its artifacts stay, so that it resumes (in-process) from the step that failed.
    assert "extracted.json" in world.artifacts(cloud_kb, cloud)

    world.deploy(healthy)
    resumed = world.loop.run(world.service.resume(cloud.id))
    assert resumed.status == "succeeded", resumed
    assert world.documents(cloud_kb)["policy/travel.md"] == ("ready", None)
    assert world.artifacts(cloud_kb, resumed) == []
