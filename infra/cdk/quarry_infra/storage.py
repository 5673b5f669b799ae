"""The documents bucket (SSE-KMS, private, TLS only, EventBridge notifications) and the rule that
hands its ``tenants/`` object events to the ingestion function."""

from __future__ import annotations

from typing import cast

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.nag import suppress

DOCUMENTS_PREFIX = "tenants/"  # tenants/{tenant}/kbs/{kb}/{name}: the uploads
RUNS_PREFIX = "runs/"  # runs/{tenant}/{kb}/{run}/: private saga artifacts
RUN_ARTIFACT_DAYS = 30  # a failed run can be resumed this long
DLQ_RETENTION = Duration.days(14)
EVENT_RETRIES = 4
EVENT_MAX_AGE = Duration.hours(2)


def dead_letter_queue(scope: Construct, construct_id: str) -> sqs.Queue:
    """An encrypted, TLS-only queue that keeps failed deliveries for two weeks."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=DLQ_RETENTION,
    )
    suppress(
        queue,
        "AwsSolutions-SQS3",
        "This queue is itself a dead-letter queue (of a Lambda function or an EventBridge "
        "target); its depth is alarmed on in the observability construct.",
    )
    return queue


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.key = kms.Key(
            self,
            "DocumentsKey",
            description="Quarry documents bucket (SSE-KMS)",
            enable_key_rotation=True,
            removal_policy=config.removal_policy,
        )
        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access logs can only be delivered to an SSE-S3 bucket.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=config.removal_policy,
            auto_delete_objects=not config.is_prod,
        )
        suppress(
            access_logs,
            "AwsSolutions-S1",
            "This bucket receives the documents bucket's access logs; logging it would loop.",
        )
        self.bucket = s3.Bucket(
            self,
            "Documents",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=config.versioned_bucket,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="documents/",
            lifecycle_rules=[
                s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(7)),
                s3.LifecycleRule(prefix=RUNS_PREFIX, expiration=Duration.days(RUN_ARTIFACT_DAYS)),
                s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30)),
            ],
            removal_policy=config.removal_policy,
            auto_delete_objects=not config.is_prod,
        )
        # S3 → EventBridge set natively on the bucket (event_bridge_enabled=True would add a
        # custom-resource Lambda to do the same).
        cfn_bucket = cast(s3.CfnBucket, self.bucket.node.default_child)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )
        self.object_events_dlq = dead_letter_queue(self, "ObjectEventsDlq")

    def route_object_events_to(self, function: lambda_.IFunction) -> events.Rule:
        """Object Created / Object Deleted under ``tenants/`` → ``function`` (retried, then the
        DLQ). An upload starts ingestion; a removal deletes the document."""
        rule = events.Rule(
            self,
            "ObjectEvents",
            rule_name=f"{self._config.prefix}-document-objects",
            description="Documents bucket: object created/deleted under tenants/ → ingestion",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created", "Object Deleted"],
                detail={
                    "bucket": {"name": [self.bucket.bucket_name]},
                    "object": {"key": [{"prefix": DOCUMENTS_PREFIX}]},
                },
            ),
        )
        rule.add_target(
            targets.LambdaFunction(
                function,
                dead_letter_queue=self.object_events_dlq,
                retry_attempts=EVENT_RETRIES,
                max_event_age=EVENT_MAX_AGE,
            )
        )
        return rule
