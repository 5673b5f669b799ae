"""The tuner's schedule: an EventBridge rule (``rate(24 hours)`` unless the context's
``tuning_schedule`` says otherwise) that invokes the tuning function with a Scheduled Event."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.storage import dead_letter_queue


class TuningSchedule(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dlq = dead_letter_queue(self, "Dlq")
        self.rule = events.Rule(
            self,
            "Schedule",
            rule_name=f"{config.prefix}-tuning",
            description="Re-fits the query router's thresholds from the logged queries",
            schedule=events.Schedule.expression(config.tuning_schedule),
        )
        self.rule.add_target(
            targets.LambdaFunction(
                function,
                dead_letter_queue=self.dlq,
                retry_attempts=2,
                max_event_age=Duration.hours(1),
            )
        )
