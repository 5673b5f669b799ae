"""Workflow runs on Step Functions. Workflows are defined at run time, so their state machines
cannot be in the template: the workflows function creates one per workflow version when it first
runs (``shared.adapters.stepfunctions_workflow_state_machines``, the ASL compiled by
``shared.workflows.asl``) and each machine's tasks invoke the workflows function again.

This construct makes what those machines need: the role they run as (it may invoke the workflows
function, and write X-Ray traces), and the workflows function's grants, scoped to machines and
executions whose names start with the stage's prefix (``quarry-dev-workflow-*``): create, update,
describe, tag and delete them, start, list and stop their executions, answer their approval
tasks (task tokens), and pass that one role to Step Functions only.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.nag import suppress
from quarry_infra.sagas import state_machine_arn

MACHINE_ACTIONS = [
    "states:CreateStateMachine",
    "states:UpdateStateMachine",
    "states:DescribeStateMachine",
    "states:DeleteStateMachine",
    "states:TagResource",
    "states:StartExecution",
    "states:ListExecutions",
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
]
EXECUTION_ACTIONS = ["states:StopExecution", "states:DescribeExecution"]


def workflow_machine_prefix(config: StageConfig) -> str:
    return f"{config.prefix}-workflow"


class Workflows(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        function: lambda_.Function,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = workflow_machine_prefix(config)
        self.role = iam.Role(
            self,
            "StateMachineRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Runs the state machines of Quarry workflows",
        )
        # The unqualified ARN only: that is what the tasks invoke.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[function.function_arn]
            )
        )
        self.role.add_to_policy(  # the machines are created with tracing on
            iam.PolicyStatement(
                actions=[
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                ],
                resources=["*"],
            )
        )
        suppress(
            self.role,
            "AwsSolutions-IAM5",
            "X-Ray's trace and sampling actions support no resource-level permissions.",
            applies_to=["Resource::*"],
        )

        machines = state_machine_arn(self, f"{prefix}-*")
        executions = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{prefix}-*:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=MACHINE_ACTIONS, resources=[machines])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=EXECUTION_ACTIONS, resources=[executions])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "states.amazonaws.com"}},
            )
        )
        function.add_environment(
            "QUARRY_AWS__WORKFLOW_STATE_MACHINE_PREFIX", state_machine_arn(self, prefix)
        )
        function.add_environment("QUARRY_AWS__WORKFLOW_ROLE_ARN", self.role.role_arn)
        suppress(
            function,
            "AwsSolutions-IAM5",
            "Workflow state machines are created at run time, one per workflow version: the "
            "grants cover the machines and executions named with the stage's workflow prefix.",
            applies_to=[
                f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
                f"stateMachine:{prefix}-*",
                f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
                f"execution:{prefix}-*:*",
            ],
        )
