"""Builds the CDK app: one QuarryStack for the stage in the context, checked by cdk-nag."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:  # the stack compiles the saga from shared/
    sys.path.insert(0, str(REPO_ROOT))

from aws_cdk import App as CdkApp  # noqa: E402
from aws_cdk import Aspects, Environment, Tags  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from quarry_infra.config import load_config  # noqa: E402
from quarry_infra.stack import QuarryStack  # noqa: E402

# `cdk synth --no-staging` for SAM: assets stay in place (not copied into cdk.out) and each
# asset-backed resource records its source folder and construct path in its metadata.
SAM_CONTEXT = {
    "aws:cdk:disable-asset-staging": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:enable-path-metadata": True,
}


# Feature flags, set here rather than in cdk.json so that `python app.py`, the tests and the
# CDK CLI synthesize the same template.
FEATURE_FLAGS = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,  # no legacy AccessControl ACL
    "@aws-cdk/aws-s3:createDefaultLoggingPolicy": True,
    "@aws-cdk/aws-lambda:recognizeLayerVersion": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:checkSecretUsage": True,
    "@aws-cdk/core:enablePartitionLiterals": True,
    "@aws-cdk/aws-events:eventsTargetQueueSameAccount": True,
    "@aws-cdk/aws-rds:databaseProxyUniqueResourceName": True,
}


def stack_name(stage: str) -> str:
    return f"Quarry-{stage}"


def cli_environment() -> Environment | None:
    """The account and region the CDK CLI resolved from the credentials, if any."""
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    return Environment(account=account, region=region) if account and region else None


def build_app(
    context: Mapping[str, Any] | None = None,
    outdir: str | None = None,
    env: Environment | None = None,
) -> tuple[CdkApp, QuarryStack]:
    """The app and its stack. ``context`` adds to what the CDK CLI passes (``-c key=value``);
    without ``env`` the stack is environment-agnostic (tests, template.yaml)."""
    app = CdkApp(context={**FEATURE_FLAGS, **(context or {})}, outdir=outdir)
    config = load_config(app.node)
    stack = QuarryStack(
        app,
        stack_name(config.stage),
        config=config,
        repo_root=REPO_ROOT,
        env=env,
        description=f"Quarry serverless RAG platform ({config.stage})",
        termination_protection=config.is_prod,
    )
    for key, value in (("project", "quarry"), ("stage", config.stage)):
        # CDK deems a proxy target group taggable; CloudFormation does not.
        Tags.of(stack).add(key, value, exclude_resource_types=["AWS::RDS::DBProxyTargetGroup"])
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app, stack
