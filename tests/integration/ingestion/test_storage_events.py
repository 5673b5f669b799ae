"""The ingestion Lambda on S3 notifications (direct and EventBridge shapes), with moto S3."""

from __future__ import annotations

import copy
import importlib
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.db.migrate import upgrade
from tests.events import FakeLambdaContext, load_event
from tests.fixtures.aws import REGION

pytestmark = pytest.mark.integration

BUCKET = f"quarry-documents-123456789012-{REGION}"
TEXT = b"Quarry stores the invoices of the Basel office for ten years."
NAME = "finance/retention policy ü.txt"


@pytest.fixture
def handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_credentials: None
) -> Iterator[Any]:
    for name, value in {
        "QUARRY_DATA_DIR": str(tmp_path),
        "QUARRY_BLOB_STORE": "s3",
        "QUARRY_AWS__DOCUMENTS_BUCKET": BUCKET,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        import functions.ingestion.app
        import functions.ingestion.handler

        importlib.reload(functions.ingestion.app)  # the app reads settings at import
        module = importlib.reload(functions.ingestion.handler)
        container = module.app.state.container_provider.get()
        upgrade(container.settings.database_url)
        yield module
        importlib.reload(functions.ingestion.app)


def setup_kb(handler: Any) -> tuple[uuid.UUID, uuid.UUID, str]:
    from functions.common.lambda_entry import run_async
    from shared.kb.service import KbSpec

    container = handler.app.state.container_provider.get()

    async def create() -> tuple[uuid.UUID, uuid.UUID]:
        tenant = await container.kb_repository.ensure_tenant("acme")
        kb = await container.kb_service.create(tenant, KbSpec(name="finance"))
        return tenant, kb.id

    tenant, kb = run_async(create())
    key = f"tenants/{tenant}/kbs/{kb}/{NAME}"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=TEXT)
    return tenant, kb, key


def direct_event(name: str, key: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event(name))
    event["Records"][0]["s3"]["object"]["key"] = urllib.parse.quote_plus(key, safe="/")
    return event


def eventbridge_event(name: str, key: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event(name))
    event["detail"]["object"]["key"] = key
    return event


def documents(handler: Any, tenant: uuid.UUID, kb: uuid.UUID) -> dict[str, str]:
    from functions.common.lambda_entry import run_async

    container = handler.app.state.container_provider.get()
    docs = run_async(container.kb_repository.list_documents(tenant, kb))
    return {d.name: d.status for d in docs}


@pytest.mark.parametrize(
    ("created", "removed", "shape"),
    [
        ("s3_object_created", "s3_object_removed", direct_event),
        ("eventbridge_s3_object_created", "eventbridge_s3_object_deleted", eventbridge_event),
    ],
)
def test_upload_ingests_and_removal_deletes(
    handler: Any, created: str, removed: str, shape: Any
) -> None:
    tenant, kb, key = setup_kb(handler)
    outcome = handler.lambda_handler(shape(created, key), FakeLambdaContext())
    assert outcome["ingested"] == [NAME], json.dumps(outcome)
    assert documents(handler, tenant, kb) == {NAME: "ready"}

    outcome = handler.lambda_handler(shape(removed, key), FakeLambdaContext())
    assert outcome["deleted"] == [NAME]
    assert documents(handler, tenant, kb) == {}


def test_objects_of_unknown_kbs_are_skipped(handler: Any) -> None:
    key = f"tenants/{uuid.uuid4()}/kbs/{uuid.uuid4()}/x.txt"
    outcome = handler.lambda_handler(direct_event("s3_object_created", key), FakeLambdaContext())
    assert outcome["skipped"] == [key]
    assert outcome["ingested"] == []


def test_saga_steps_run_as_step_functions_tasks(handler: Any) -> None:
    """The state machine's tasks: each step through the handler, the state carried between,
    every step recorded in the run, and the run's end."""
    from functions.common.lambda_entry import run_async

    tenant, kb, key = setup_kb(handler)
    store = handler.app.state.container_provider.get().saga_run_store
    steps = ("extract", "register", "chunk", "embed", "index", "publish")
    item = {
        "name": NAME,
        "blob_key": key,
        "media_type": "text/plain",
        "content_hash": "h1",
        "size": len(TEXT),
    }
    state: dict[str, Any] = {"tenant_id": str(tenant), "kb_id": str(kb), "items": [item]}
    run_id = run_async(store.create("ingestion", tenant, kb, state, list(steps)))
    state["run_id"] = str(run_id)
    for step in steps:
        task = {"saga": "ingestion", "step": step, "state": state}
        state = handler.lambda_handler(task, FakeLambdaContext())
    assert state["published"] == 1
    assert documents(handler, tenant, kb) == {NAME: "ready"}
    assert run_async(store.load(run_id)).status == "running"

    finish = {"saga": "ingestion", "finish": "succeeded", "state": state}
    assert handler.lambda_handler(finish, FakeLambdaContext()) == state
    run = run_async(store.load(run_id))
    assert run.status == "succeeded"
    assert run.step_status == dict.fromkeys(steps, "succeeded")
    with pytest.raises(Exception, match="unknown step"):
        handler.lambda_handler(
            {"saga": "ingestion", "step": "nope", "state": state}, FakeLambdaContext()
        )
