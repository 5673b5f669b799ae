"""HTTP routes of the workflows domain: definitions, runs, approvals and usage figures.

Runs execute in the background (of the serving process, or on Step Functions); ``wait: true``
answers once the run finished or paused, or after ``QUARRY_WORKFLOWS__MAX_WAIT_S``, whichever
comes first.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from functions.common.dependencies import (
    ContainerDep,
    WorkflowManager,
    WorkflowReader,
    WorkflowRunner,
)
from functions.common.health_routes import domain_health_router
from functions.workflows.schemas import (
    Decision,
    NodeRunOut,
    ResumeBody,
    RunDetail,
    RunList,
    RunOut,
    RunStart,
    WorkflowDetail,
    WorkflowList,
    WorkflowOut,
)
from shared.container import Container

router = APIRouter(tags=["workflows"])
router.include_router(domain_health_router("workflows"))

DEFINITION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A workflow definition, as JSON or YAML.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def _wait_s(container: Container, wait: bool) -> float:
    return container.settings.workflows.max_wait_s if wait else 0.0


@router.post("/v1/workflows", status_code=status.HTTP_201_CREATED, openapi_extra=DEFINITION_BODY)
async def create_workflow(
    request: Request, principal: WorkflowManager, container: ContainerDep
) -> WorkflowDetail:
    workflow = await container.workflow_service.create(principal, await request.body())
    return WorkflowDetail.model_validate(workflow)


@router.get("/v1/workflows")
async def list_workflows(principal: WorkflowReader, container: ContainerDep) -> WorkflowList:
    workflows = await container.workflow_service.list_workflows(principal)
    return WorkflowList(items=[WorkflowOut.model_validate(w) for w in workflows])


@router.get("/v1/workflows/{name}")
async def get_workflow(
    name: str,
    principal: WorkflowReader,
    container: ContainerDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> WorkflowDetail:
    workflow = await container.workflow_service.get(principal, name, version)
    return WorkflowDetail.model_validate(workflow)


@router.put("/v1/workflows/{name}", openapi_extra=DEFINITION_BODY)
async def update_workflow(
    name: str, request: Request, principal: WorkflowManager, container: ContainerDep
) -> WorkflowDetail:
    """Stores the definition as the workflow's next version."""
    workflow = await container.workflow_service.update(principal, name, await request.body())
    return WorkflowDetail.model_validate(workflow)


@router.delete("/v1/workflows/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_workflow(
    name: str, principal: WorkflowManager, container: ContainerDep
) -> Response:
    await container.workflow_service.delete(principal, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/workflows/{name}/runs", status_code=status.HTTP_202_ACCEPTED)
async def start_run(
    name: str,
    body: RunStart,
    principal: WorkflowRunner,
    container: ContainerDep,
    response: Response,
) -> RunOut:
    """Answers 202 with the run ``running`` (poll it), or with ``wait`` 200 once it finished
    or paused (or still running after the wait bound)."""
    run = await container.workflow_service.start_run(
        principal,
        name,
        body.input,
        version=body.version,
        wait_s=_wait_s(container, body.wait),
    )
    if body.wait:
        response.status_code = status.HTTP_200_OK
    return RunOut.model_validate(run)


@router.get("/v1/workflows/{name}/runs")
async def list_runs(
    name: str,
    principal: WorkflowReader,
    container: ContainerDep,
    status_filter: Annotated[str | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunList:
    runs = await container.workflow_service.list_runs(
        principal, workflow=name, status=status_filter, limit=limit, offset=offset
    )
    return RunList(items=[RunOut.model_validate(r) for r in runs], limit=limit, offset=offset)


@router.get("/v1/workflow-runs/{run_id}")
async def get_run(
    run_id: uuid.UUID, principal: WorkflowReader, container: ContainerDep
) -> RunDetail:
    details = await container.workflow_service.get_run(principal, run_id)
    return RunDetail(
        **RunOut.model_validate(details.run).model_dump(),
        nodes=[NodeRunOut.model_validate(n) for n in details.nodes],
    )


@router.post("/v1/workflow-runs/{run_id}/approve")
async def approve_run(
    run_id: uuid.UUID, body: Decision, principal: WorkflowRunner, container: ContainerDep
) -> RunOut:
    run = await container.workflow_service.approve(
        principal,
        run_id,
        node=body.node,
        comment=body.comment,
        wait_s=_wait_s(container, body.wait),
    )
    return RunOut.model_validate(run)


@router.post("/v1/workflow-runs/{run_id}/reject")
async def reject_run(
    run_id: uuid.UUID, body: Decision, principal: WorkflowRunner, container: ContainerDep
) -> RunOut:
    run = await container.workflow_service.reject(
        principal,
        run_id,
        node=body.node,
        comment=body.comment,
        wait_s=_wait_s(container, body.wait),
    )
    return RunOut.model_validate(run)


@router.post("/v1/workflow-runs/{run_id}/cancel")
async def cancel_run(
    run_id: uuid.UUID, principal: WorkflowRunner, container: ContainerDep
) -> RunOut:
    return RunOut.model_validate(await container.workflow_service.cancel(principal, run_id))


@router.post("/v1/workflow-runs/{run_id}/resume")
async def resume_run(
    run_id: uuid.UUID, body: ResumeBody, principal: WorkflowRunner, container: ContainerDep
) -> RunOut:
    run = await container.workflow_service.resume(
        principal, run_id, wait_s=_wait_s(container, body.wait)
    )
    return RunOut.model_validate(run)


@router.get("/v1/stats/workflows")
async def stats_workflows(
    principal: WorkflowReader,
    container: ContainerDep,
    window_hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
) -> dict[str, Any]:
    """Runs by workflow and status, success rate, p50/p95 duration and tool calls."""
    return await container.workflow_service.stats(principal, window_hours=window_hours)
