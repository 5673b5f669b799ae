"""The ingestion saga as a Step Functions state machine, compiled by ``shared.sagas.asl`` from
``IngestionSteps.definition()``: the same steps, retries and compensation as the in-process
runner. Every task invokes the ingestion function.

The state machine has a fixed name so that its ARN is known before it exists: the ingestion
function needs the ARN (environment, ``states:StartExecution``) and the state machine needs the
function's ARN, which by reference would be a dependency cycle.
"""

from __future__ import annotations

import json
from typing import cast

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.nag import suppress
from shared.ingestion.saga import IngestionDeps, IngestionSteps
from shared.sagas.asl import client_error_names, compile_saga
from shared.sagas.definition import SagaDefinition

FUNCTION_ARN_PLACEHOLDER = "IngestionFunctionArn"
EXECUTION_TIMEOUT = Duration.hours(6)


def ingestion_definition() -> SagaDefinition:
    """The saga's steps. ``definition()`` only refers to the bound step methods and never calls
    them, so no dependencies (database, blobs, models) are needed to build it."""
    return IngestionSteps(cast(IngestionDeps, None)).definition()


def ingestion_state_machine_name(config: StageConfig) -> str:
    return f"{config.prefix}-ingestion"


def state_machine_arn(scope: Construct, name: str) -> str:
    return Stack.of(scope).format_arn(
        service="states",
        resource="stateMachine",
        resource_name=name,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class Sagas(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        asl = compile_saga(
            ingestion_definition(),
            "${" + FUNCTION_ARN_PLACEHOLDER + "}",
            non_retryable_errors=client_error_names(),
        )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Runs the Quarry ingestion saga",
        )
        # The unqualified ARN only (no versions or aliases): that is what the tasks invoke.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[function.function_arn]
            )
        )
        log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{config.prefix}-ingestion",
            retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "Ingestion",
            state_machine_name=ingestion_state_machine_name(config),
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(json.dumps(asl)),
            definition_substitutions={FUNCTION_ARN_PLACEHOLDER: function.function_arn},
            role=role,
            timeout=EXECUTION_TIMEOUT,
            tracing_enabled=True,
            # Execution data holds document names and tenant ids: events only, not payloads.
            logs=sfn.LogOptions(
                destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        suppress(
            role,
            "AwsSolutions-IAM5",
            "Resource * is what these actions support: X-Ray (PutTraceSegments, "
            "PutTelemetryRecords, sampling rules) and CloudWatch Logs delivery for vended logs "
            "(CreateLogDelivery, PutResourcePolicy, DescribeLogGroups, ...).",
            applies_to=["Resource::*"],
        )
