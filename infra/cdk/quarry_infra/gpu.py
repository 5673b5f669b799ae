"""The GPU endpoint (``gpu_endpoint/``) as a SageMaker real-time endpoint, auto scaled; with
``gpu_scale_to_zero`` (on in dev, off in prod) it scales to zero instances when idle.

Real-time rather than asynchronous: queries embed their text synchronously within a 1-15 s
budget, and an async endpoint answers through S3 minutes later at worst. Two ways to run it:

- Warm (prod): the model is the endpoint's production variant. ``gpu_min_instances`` (1) keep
  running whatever the traffic; target tracking on invocations per instance adds instances up to
  ``gpu_max_instances``.
- Scale to zero (dev), SageMaker's supported way for a real-time endpoint to reach zero
  instances: the endpoint config holds no model, only managed instance scaling
  (``MinInstanceCount`` 0), and the model is an inference component on the endpoint. Application
  Auto Scaling moves the component's copy count between 0 and ``gpu_max_instances`` (a copy takes
  a GPU: one copy per instance), and SageMaker starts and stops instances to fit the copies.
  Target tracking on invocations per copy scales out under load and back in to zero once idle
  (its scale-in alarm wants a quarter of an hour of quiet, then the empty instance is released).
  Target tracking cannot leave zero (there is no copy to divide by): a step scaling policy adds
  the first copy when the ``NoCapacityInvocationFailures`` alarm fires, which SageMaker counts
  for each request that found no copy. So an idle dev GPU costs nothing, but the requests that
  wake it fail, as does every request for the several minutes that an instance takes to start
  and load the models: the client takes SageMaker's "no capacity" answer as the endpoint being
  unavailable, so queries answer keyword-only (flagged ``degraded``) and ingestion waits and
  resumes. Functions name the component in each call (``QUARRY_AWS__GPU_INFERENCE_COMPONENT``).

The image: ``gpu_image_repository`` + ``gpu_image_tag`` from the context (an image you pushed),
else a ``DockerImageAsset`` of ``gpu_endpoint/Dockerfile``. CDK only stages the build context at
synth; Docker builds and pushes it at deploy time, so synth needs no Docker.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Duration, IgnoreMode, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.nag import matching, suppress

VARIANT = "AllTraffic"
CONTAINER_STARTUP_TIMEOUT_S = 900  # the CUDA image is large and loads every model at start
# What one inference component copy reserves on its instance: a GPU, and host memory for the
# CUDA runtime and the small models (the smallest GPU instances have 16 GiB).
COPY_ACCELERATORS = 1
COPY_MEMORY_MB = 4096
# What SageMaker counts, per inference component, for a request that found no copy to serve it.
NO_CAPACITY_METRIC = "NoCapacityInvocationFailures"
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
        # Scale to zero: the inference component that functions name in each call.
        self.inference_component_name = (
            f"{config.prefix}-gpu-models" if config.gpu_scale_to_zero else None
        )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker execution role of the Quarry GPU endpoint",
        )
        image_uri = self._image(config, repo_root, role)
        self._grant_logs(role)
        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(image=image_uri),
            # Every model is baked into the image: the container never needs the network.
            enable_network_isolation=True,
        )
        model.node.add_dependency(role)
        if self.inference_component_name:
            endpoint_config = self._component_endpoint_config(config, role)
        else:
            endpoint_config = self._model_endpoint_config(config, model)
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=endpoint_config.attr_endpoint_config_name,
        )
        # What ``sagemaker:InvokeEndpoint`` is authorized against: the endpoint, and the
        # inference component that a call names.
        self.invoke_arns = [self.endpoint.ref]
        self.invocation_url = (
            f"https://runtime.sagemaker.{stack.region}.{stack.url_suffix}"
            f"/endpoints/{self.endpoint_name}"
        )
        if self.inference_component_name:
            component = self._inference_component(self.inference_component_name, model)
            self.invoke_arns.append(component.attr_inference_component_arn)
            self._component_autoscaling(config, self.inference_component_name, component)
        else:
            self._variant_autoscaling(config)

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

    def _grant_logs(self, role: iam.Role) -> None:
        """The endpoint's log group, and the inference component's (its container's logs)."""
        groups = [f"/aws/sagemaker/Endpoints/{self.endpoint_name}"]
        if self.inference_component_name:
            groups.append(f"/aws/sagemaker/InferenceComponents/{self.inference_component_name}")
        arns = [
            Stack.of(self).format_arn(
                service="logs",
                resource="log-group",
                resource_name=group,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            for group in groups
        ]
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[*arns, *(f"{arn}:log-stream:*" for arn in arns)],
            )
        )
        suppress(
            role,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken has no resource-level permissions (Resource *); the "
            "container's log streams are created at run time under its own log group.",
            applies_to=["Resource::*", matching(r"^Resource::arn:.*:log-stream:\*$")],
        )

    def _model_endpoint_config(
        self, config: StageConfig, model: sagemaker.CfnModel
    ) -> sagemaker.CfnEndpointConfig:
        """Warm: the model is the variant, on ``gpu_min_instances`` from the start."""
        return sagemaker.CfnEndpointConfig(
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

    def _component_endpoint_config(
        self, config: StageConfig, role: iam.Role
    ) -> sagemaker.CfnEndpointConfig:
        """Scale to zero: no model on the variant (inference components bring it), the role
        and network isolation on the config, and instances that SageMaker manages down to 0.
        The endpoint starts with one instance (the least it is created with), which the
        component's first copy uses; idle, both go."""
        endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            execution_role_arn=role.role_arn,
            enable_network_isolation=True,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT,
                    instance_type=config.gpu_instance_type,
                    initial_instance_count=1,
                    managed_instance_scaling=sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
                        status="ENABLED",
                        min_instance_count=0,
                        max_instance_count=self._max_copies(config),
                    ),
                    routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                        routing_strategy="LEAST_OUTSTANDING_REQUESTS"
                    ),
                )
            ],
        )
        endpoint_config.node.add_dependency(role)
        return endpoint_config

    def _inference_component(
        self, name: str, model: sagemaker.CfnModel
    ) -> sagemaker.CfnInferenceComponent:
        """The model on the endpoint, one copy to start with (so a deploy proves that the
        image starts); auto scaling owns the copy count from then on."""
        return sagemaker.CfnInferenceComponent(
            self,
            "InferenceComponent",
            inference_component_name=name,
            endpoint_name=self.endpoint.attr_endpoint_name,
            variant_name=VARIANT,
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=model.attr_model_name,
                compute_resource_requirements=sagemaker.CfnInferenceComponent.InferenceComponentComputeResourceRequirementsProperty(
                    number_of_accelerator_devices_required=COPY_ACCELERATORS,
                    min_memory_required_in_mb=COPY_MEMORY_MB,
                ),
                startup_parameters=sagemaker.CfnInferenceComponent.InferenceComponentStartupParametersProperty(
                    container_startup_health_check_timeout_in_seconds=CONTAINER_STARTUP_TIMEOUT_S
                ),
            ),
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=1
            ),
        )

    @staticmethod
    def _max_copies(config: StageConfig) -> int:
        return max(config.gpu_max_instances, 1)

    def _variant_autoscaling(self, config: StageConfig) -> None:
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

    def _component_autoscaling(
        self, config: StageConfig, name: str, component: sagemaker.CfnInferenceComponent
    ) -> None:
        """Copies 0..max: target tracking between 1 and max and back to 0; a step policy on
        the no-capacity alarm for 0 → 1 (the AWS guide "Scale an endpoint to zero instances")."""
        target = autoscaling.ScalableTarget(
            self,
            "Scaling",
            service_namespace=autoscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"inference-component/{name}",
            scalable_dimension="sagemaker:inference-component:DesiredCopyCount",
            min_capacity=0,
            max_capacity=self._max_copies(config),
        )
        target.node.add_dependency(component)
        target.scale_to_track_metric(
            "InvocationsPerCopy",
            predefined_metric=autoscaling.PredefinedMetric.SAGEMAKER_INFERENCE_COMPONENT_INVOCATIONS_PER_COPY,
            target_value=config.gpu_invocations_per_instance,  # one copy per instance
            scale_out_cooldown=Duration.minutes(2),
            scale_in_cooldown=Duration.minutes(10),
        )
        scale_from_zero = autoscaling.StepScalingAction(
            self,
            "ScaleFromZero",
            scaling_target=target,
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            metric_aggregation_type=autoscaling.MetricAggregationType.MAXIMUM,
            cooldown=Duration.minutes(1),
        )
        scale_from_zero.add_adjustment(adjustment=1, lower_bound=0)
        no_capacity = cloudwatch.Metric(
            namespace="AWS/SageMaker",
            metric_name=NO_CAPACITY_METRIC,
            dimensions_map={"InferenceComponentName": name},
            statistic="Sum",
            period=Duration.minutes(1),
        )
        alarm = no_capacity.create_alarm(
            self,
            "NoCapacityAlarm",
            alarm_name=f"{self.endpoint_name}-scale-from-zero",
            alarm_description="a request found no copy of the GPU models: add the first copy",
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            # No failures, no data: back to OK, so that the next wake-up is a new alarm.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.ApplicationScalingAction(scale_from_zero))
