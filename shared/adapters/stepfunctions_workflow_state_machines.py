"""Workflow runs on AWS Step Functions: one state machine per workflow version, compiled by
``shared.workflows.asl``, created on first use (or when deployed) and brought up to date when
its compiled definition or role changed; each run is an execution named after the run.

Names: ``<prefix>-<digest>-v<version>``, where the prefix is the last part of the configured
ARN prefix (``arn:aws:states:<region>:<account>:stateMachine:<prefix>``, which is what the
function's IAM policy is scoped to) and the digest stands for the tenant and the workflow name
(a name may be 100 characters, a state machine's at most 80); tags carry both in clear. The
execution input is ``{"run_id", "tenant_id", "input"}``. Step Functions' errors are
``DependencyUnavailable`` (``stepfunctions_unavailable``); boto3 is synchronous, so the calls run
in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import ConfigurationError, DependencyUnavailable
from shared.workflows.asl import compile_workflow
from shared.workflows.definition import WorkflowDefinition

ALREADY_STARTED = "ExecutionAlreadyExists"
NO_MACHINE = "StateMachineDoesNotExist"
MACHINE_EXISTS = "StateMachineAlreadyExists"
MAX_PREFIX_CHARS = 48  # + "-" + 16 hex + "-v" + a version: within the 80 a name may have
_ARN_PREFIX = re.compile(
    rf"^arn:[a-z-]+:states:[a-z0-9-]+:\d{{12}}:stateMachine:[A-Za-z0-9_-]{{1,{MAX_PREFIX_CHARS}}}$"
)
T = TypeVar("T")


class StepFunctionsWorkflowStateMachines:
    def __init__(
        self,
        *,
        arn_prefix: str,
        role_arn: str,
        function: str,
        default_timeout_s: float,
        default_approval_timeout_s: float,
        client: Any = None,
        region: str | None = None,
    ) -> None:
        """``function``: the workflows step function the tasks invoke (name or ARN).
        ``client``: a boto3 ``stepfunctions`` client, built from ``region`` when None."""
        if not _ARN_PREFIX.match(arn_prefix):
            raise ConfigurationError(
                f"{arn_prefix!r} is not a state machine ARN prefix "
                f"(arn:aws:states:<region>:<account>:stateMachine:<name prefix of at most "
                f"{MAX_PREFIX_CHARS} letters, digits, '_' or '-'>)"
            )
        self._arn_prefix = arn_prefix
        self._role_arn = role_arn
        self._function = function
        self._default_timeout_s = default_timeout_s
        self._default_approval_timeout_s = default_approval_timeout_s
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "stepfunctions", region_name=region, config=Config(retries={"mode": "standard"})
            )
        self._client: Any = client

    def arn_of(self, tenant_id: uuid.UUID, name: str, version: int) -> str:
        digest = hashlib.sha256(f"{tenant_id}/{name}".encode()).hexdigest()[:16]
        return f"{self._arn_prefix}-{digest}-v{version}"

    def compile(self, definition: WorkflowDefinition) -> dict[str, Any]:
        return compile_workflow(
            definition,
            step_function_arn=self._function,
            default_timeout_s=self._default_timeout_s,
            default_approval_timeout_s=self._default_approval_timeout_s,
        )

    async def deploy(self, tenant_id: uuid.UUID, definition: WorkflowDefinition) -> str:
        asl = self.compile(definition)
        arn = self.arn_of(tenant_id, definition.name, definition.version)
        return await self._call(lambda: self._deploy(arn, asl, tenant_id, definition))

    def _deploy(
        self, arn: str, asl: dict[str, Any], tenant_id: uuid.UUID, definition: WorkflowDefinition
    ) -> str:
        try:
            current = self._client.describe_state_machine(stateMachineArn=arn)
        except ClientError as exc:
            if _code(exc) != NO_MACHINE:
                raise
        else:
            if json.loads(current["definition"]) != asl or current["roleArn"] != self._role_arn:
                self._client.update_state_machine(
                    stateMachineArn=arn, definition=json.dumps(asl), roleArn=self._role_arn
                )
            return arn
        try:
            self._client.create_state_machine(
                name=arn.rsplit(":", 1)[1],
                definition=json.dumps(asl),
                roleArn=self._role_arn,
                type="STANDARD",
                tracingConfiguration={"enabled": True},
                tags=[
                    {"key": "quarry:tenant", "value": str(tenant_id)},
                    {"key": "quarry:workflow", "value": definition.name},
                    {"key": "quarry:version", "value": str(definition.version)},
                ],
            )
        except ClientError as exc:  # created meanwhile by another call: bring it up to date
            if _code(exc) != MACHINE_EXISTS:
                raise
            self._client.update_state_machine(
                stateMachineArn=arn, definition=json.dumps(asl), roleArn=self._role_arn
            )
        return arn

    async def start(
        self,
        tenant_id: uuid.UUID,
        definition: WorkflowDefinition,
        *,
        run_id: uuid.UUID,
        run_input: dict[str, Any],
        execution_name: str | None = None,
    ) -> str:
        arn = self.arn_of(tenant_id, definition.name, definition.version)
        name = execution_name or str(run_id)
        payload = json.dumps(
            {"run_id": str(run_id), "tenant_id": str(tenant_id), "input": run_input},
            separators=(",", ":"),
        )

        def start() -> str:
            try:
                started = self._client.start_execution(
                    stateMachineArn=arn, name=name, input=payload
                )
            except ClientError as exc:
                if _code(exc) == ALREADY_STARTED:
                    return _execution_arn(arn, name)
                raise
            return str(started["executionArn"])

        try:
            return await self._call(start)
        except DependencyUnavailable as exc:
            if exc.details.get("reason") != NO_MACHINE:
                raise
        await self.deploy(tenant_id, definition)  # a version saved before runs went here
        return await self._call(start)

    async def stop(
        self, tenant_id: uuid.UUID, definition: WorkflowDefinition, *, run_id: uuid.UUID
    ) -> None:
        arn = self.arn_of(tenant_id, definition.name, definition.version)

        def stop() -> None:
            pages = self._client.get_paginator("list_executions").paginate(
                stateMachineArn=arn, statusFilter="RUNNING"
            )
            for page in pages:
                for execution in page["executions"]:
                    if execution["name"] == str(run_id) or execution["name"].startswith(
                        f"{run_id}-"
                    ):
                        self._client.stop_execution(
                            executionArn=execution["executionArn"],
                            error="WorkflowCancelled",
                            cause=f"run {run_id} was cancelled",
                        )

        await self._call(stop)

    async def delete(self, tenant_id: uuid.UUID, name: str, versions: Iterable[int]) -> None:
        arns = [self.arn_of(tenant_id, name, version) for version in versions]

        def delete() -> None:
            for arn in arns:
                self._client.delete_state_machine(stateMachineArn=arn)  # idempotent

        await self._call(delete)

    async def _call(self, operation: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(operation)
        except ClientError as exc:
            raise _unavailable(_code(exc)) from exc
        except BotoCoreError as exc:
            raise _unavailable(type(exc).__name__) from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "ClientError"))


def _execution_arn(machine_arn: str, name: str) -> str:
    return f"{machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


def _unavailable(reason: str) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"Step Functions failed: {reason}",
        code="stepfunctions_unavailable",
        details={"reason": reason},
    )
