"""The GPU endpoint (``gpu_endpoint/``) as a SageMaker real-time endpoint with target-tracking
auto scaling on invocations per instance.

Real-time rather than asynchronous: queries embed their text synchronously within a 1-15 s
budget, and an async endpoint answers through S3 minutes later at worst (and, scaled to zero, a
GPU instance takes minutes to start). So the endpoint keeps ``gpu_min_instances`` (default 1)
warm and scales out on load; the cost note in the README says what that costs in dev.

The image: ``gpu_image_repository`` + ``gpu_image_tag`` from the context (an image you pushed),
else a ``DockerImageAsset`` of ``gpu_endpoint/Dockerfile``. CDK only stages the build context at
synth; Docker builds and pushes it at deploy time, so synth needs no Docker.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Duration, IgnoreMode, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.nag import matching, suppress

VARIANT = "AllTraffic"
CONTAINER_STARTUP_TIMEOUT_S = 900  # the CUDA image is large and loads every model at start
# What the image build needs from the repository root (see gpu_endpoint/Dockerfile).
IMAGE_CONTEXT_EXCLUDES = [
    "*",
    "!pyproject.toml",
    "!README.md",
    "!shared",
    "!functions",
    "!gpu_endpoint",
    "**/__pycache__",
    "**/*.pyc",
]


class GpuEndpoint(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, repo_root: Path
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.endpoint_name = f"{config.prefix}-gpu"
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker execution role of the Quarry GPU endpoint",
        )
        image_uri = self._image(config, repo_root, role)
        log_group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/aws/sagemaker/Endpoints/{self.endpoint_name}",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group_arn, f"{log_group_arn}:log-stream:*"],
            )
        )
        suppress(
            role,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken has no resource-level permissions (Resource *); the "
            "endpoint's log streams are created at run time under its own log group.",
            applies_to=["Resource::*", matching(r"^Resource::arn:.*:log-stream:\*$")],
        )
        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(image=image_uri),
            # Every model is baked into the image: the container never needs the network.
            enable_network_isolation=True,
        )
        model.node.add_dependency(role)
        endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT,
                    model_name=model.attr_model_name,
                    instance_type=config.gpu_instance_type,
                    initial_instance_count=config.gpu_min_instances,
                    initial_variant_weight=1.0,
                    container_startup_health_check_timeout_in_seconds=CONTAINER_STARTUP_TIMEOUT_S,
                )
            ],
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=endpoint_config.attr_endpoint_config_name,
        )
        self.endpoint_arn = self.endpoint.ref
        self.invocation_url = (
            f"https://runtime.sagemaker.{stack.region}.{stack.url_suffix}"
            f"/endpoints/{self.endpoint_name}"
        )
        self._autoscaling(config)

    def _image(self, config: StageConfig, repo_root: Path, role: iam.IRole) -> str:
        if config.gpu_image_repository:
            repository = ecr.Repository.from_repository_name(
                self, "Repository", config.gpu_image_repository
            )
            repository.grant_pull(role)
            return repository.repository_uri_for_tag(config.gpu_image_tag)
        asset = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(repo_root),
            file="gpu_endpoint/Dockerfile",
            exclude=IMAGE_CONTEXT_EXCLUDES,
            ignore_mode=IgnoreMode.DOCKER,
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        asset.repository.grant_pull(role)
        return asset.image_uri

    def _autoscaling(self, config: StageConfig) -> None:
        target = autoscaling.ScalableTarget(
            self,
            "Scaling",
            service_namespace=autoscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.endpoint_name}/variant/{VARIANT}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=config.gpu_min_instances,
            max_capacity=max(config.gpu_max_instances, config.gpu_min_instances),
        )
        target.node.add_dependency(self.endpoint)
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            predefined_metric=autoscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            target_value=config.gpu_invocations_per_instance,
            scale_out_cooldown=Duration.minutes(2),
            scale_in_cooldown=Duration.minutes(10),
        )
