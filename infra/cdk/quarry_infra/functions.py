"""The six domain functions, all made by one factory: same runtime, code asset (``functions/`` +
``shared/``), shared dependency layer, VPC placement, security group, JSON logs, X-Ray tracing,
log retention and async-invocation DLQ; per domain only memory, timeout, reserved concurrency,
a few environment variables and the IAM grants of its capabilities (``shared.domains``) differ.

Every grant names its actions and resources: no wildcard actions, object access limited to the
prefixes the domain touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aws_cdk import CfnElement, Duration, IgnoreMode, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.data import DB_USER, Data
from quarry_infra.events import DomainEvents
from quarry_infra.gpu import GpuEndpoint
from quarry_infra.nag import suppress
from quarry_infra.network import Network
from quarry_infra.storage import DOCUMENTS_PREFIX, RUNS_PREFIX, Storage, dead_letter_queue
from shared.domains import DOMAIN_CAPABILITIES, Capability, Domain

RUNTIME = lambda_.Runtime.PYTHON_3_12
LAYER_DIR = Path("layers/build")  # holds python/: what build_layer.py produces
CODE_EXCLUDES = ["*", "!functions", "!shared", "**/__pycache__", "**/*.pyc"]
METRICS_NAMESPACE = "Quarry"


@dataclass(frozen=True)
class DomainSpec:
    name: Domain
    description: str
    memory_mb: int
    timeout_s: int

    @property
    def handler(self) -> str:
        return f"functions.{self.name}.handler.lambda_handler"

    @property
    def construct_id(self) -> str:
        return "".join(part.title() for part in self.name.split("_"))


# HTTP-facing functions stay under API Gateway's 30 s integration timeout; those that also run
# state machine tasks (a saga's steps, a workflow's nodes) get Lambda's longest (API Gateway
# still ends a request at 30 s).
DOMAIN_SPECS: tuple[DomainSpec, ...] = (
    DomainSpec("query", "Quarry query: ask a knowledge base", 1769, 29),  # 1769 MB: one vCPU
    DomainSpec("workflows", "Quarry workflows: routes and the workflows' node tasks", 1024, 900),
    DomainSpec("kb_admin", "Quarry KB admin: knowledge bases, documents, runs", 1024, 29),
    DomainSpec("auth", "Quarry auth: tokens, API keys, the API's authorizer", 512, 10),
    DomainSpec("ingestion", "Quarry ingestion: S3 events and the saga's steps", 3008, 900),
    DomainSpec("tuning", "Quarry tuning: the router's thresholds", 1024, 300),
)


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        network: Network,
        data: Data,
        storage: Storage,
        events: DomainEvents,
        gpu: GpuEndpoint,
        saga_state_machine_arn: str,
        repo_root: Path,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._network = network
        self._data = data
        self._storage = storage
        self._events = events
        self._gpu = gpu
        self._saga_arn = saga_state_machine_arn
        architecture = (
            lambda_.Architecture.ARM_64
            if config.architecture == "arm64"
            else lambda_.Architecture.X86_64
        )
        self._architecture = architecture
        layer_dir = repo_root / LAYER_DIR
        # Synth must work before the layer is built (tests, template.yaml): an empty folder.
        (layer_dir / "python").mkdir(parents=True, exist_ok=True)
        self.layer = lambda_.LayerVersion(
            self,
            "SharedLayer",
            code=lambda_.Code.from_asset(str(layer_dir)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[architecture],
            description="Quarry core dependencies and shared/ (layers/build_layer.py)",
        )
        self._code = lambda_.Code.from_asset(
            str(repo_root), exclude=CODE_EXCLUDES, ignore_mode=IgnoreMode.DOCKER
        )
        self.by_domain: dict[str, lambda_.Function] = {}
        self.dlqs: dict[str, sqs.Queue] = {}
        for spec in DOMAIN_SPECS:
            self.by_domain[spec.name] = self._function(spec)

    # --- the factory --------------------------------------------------------------------------
    def _function(self, spec: DomainSpec) -> lambda_.Function:
        config = self._config
        log_group = logs.LogGroup(
            self,
            f"{spec.construct_id}Logs",
            retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
        dlq = dead_letter_queue(self, f"{spec.construct_id}Dlq")
        self.dlqs[spec.name] = dlq
        function = lambda_.Function(
            self,
            spec.construct_id,
            description=spec.description,
            runtime=RUNTIME,
            architecture=self._architecture,
            handler=spec.handler,
            code=self._code,
            layers=[self.layer],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            vpc=self._network.vpc,
            vpc_subnets=self._network.function_subnets,
            security_groups=[self._network.functions_sg],
            environment=self._environment(spec),
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel(config.log_level),
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=config.reserved_concurrency.get(spec.name),
            dead_letter_queue=dlq,
        )
        self._grant(spec.name, function)
        self._acknowledge(function)
        return function

    def _environment(self, spec: DomainSpec) -> dict[str, str]:
        data, access = self._data, DOMAIN_CAPABILITIES[spec.name]
        env = {
            "QUARRY_PROFILE": "aws",
            "QUARRY_DOMAIN": spec.name,
            "QUARRY_DB__URL": data.database_url,
            "QUARRY_CACHE__REDIS_URL": data.redis_url,
            "QUARRY_MODELS__PROVIDER": "gpu_endpoint",
            "QUARRY_MODELS__GPU_ENDPOINT_URL": self._gpu.invocation_url,
            "QUARRY_AWS__GPU_ENDPOINT_NAME": self._gpu.endpoint_name,
            "QUARRY_SAGA_RUNNER": "stepfunctions",
            "QUARRY_AWS__SAGA_STATE_MACHINE_ARN": self._saga_arn,
            "QUARRY_EVENT_BUS": "eventbridge",
            "QUARRY_AWS__EVENT_BUS_NAME": self._events.bus.event_bus_name,
            "QUARRY_BLOB_STORE": "s3",
            "QUARRY_AWS__DOCUMENTS_BUCKET": self._storage.bucket.bucket_name,
            "QUARRY_OBSERVABILITY__LOG_LEVEL": self._config.log_level,
            "QUARRY_OBSERVABILITY__METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_SERVICE_NAME": f"quarry-{spec.name}",
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }
        if "models" in access and self._gpu.inference_component_name:  # scale to zero
            env["QUARRY_AWS__GPU_INFERENCE_COMPONENT"] = self._gpu.inference_component_name
        if self._config.milvus_uri:  # not secret; the secret holds it too, with the token
            env["QUARRY_VECTORS__MILVUS_URI"] = self._config.milvus_uri
        # Secrets by ARN only: the function reads them at cold start.
        for capability, name, secret in self._secrets():
            if capability in access:
                env[name] = secret.secret_arn
        if self._config.db_iam_auth:
            env["QUARRY_AWS__DB_IAM_AUTH"] = "true"
        if "provider_secrets" in access:
            env["QUARRY_AUTH__SECRETS_CIPHER"] = "kms"
            env["QUARRY_AUTH__KMS_KEY_ID"] = data.provider_secrets_key.key_arn
        return env

    def _secrets(self) -> list[tuple[Capability, str, secretsmanager.ISecret]]:
        """(capability, environment variable holding the ARN, secret)."""
        data = self._data
        return [
            ("db", "QUARRY_AWS__DB_SECRET_ARN", data.db_secret),
            ("cache", "QUARRY_AWS__REDIS_SECRET_ARN", data.cache_secret),
            ("vectors", "QUARRY_AWS__MILVUS_SECRET_ARN", data.milvus_secret),
            ("jwt", "QUARRY_AWS__JWT_SECRET_ARN", data.jwt_secret),
            ("jwt", "QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN", data.api_key_pepper_secret),
        ]

    # --- least-privilege grants ---------------------------------------------------------------
    def _grant(self, domain: Domain, function: lambda_.Function) -> None:
        """What the domain may reach: ``shared.domains`` (the aws profile's start-up checks read
        the same map). db/cache/vectors/jwt: the secrets of that service (every function also
        gets the non-secret URLs); the rest: IAM grants on the resource."""
        access, data = DOMAIN_CAPABILITIES[domain], self._data
        secret_arns = [s.secret_arn for c, _, s in self._secrets() if c in access]
        if secret_arns:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    resources=secret_arns,
                )
            )
        if "db" in access and self._config.db_iam_auth:
            data.proxy.grant_connect(function, DB_USER)
        if "documents" in access:
            self._grant_documents(function)
        if "events" in access:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["events:PutEvents"], resources=[self._events.bus.event_bus_arn]
                )
            )
        if "sagas" in access:
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["states:StartExecution"], resources=[self._saga_arn])
            )
        if "models" in access:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["sagemaker:InvokeEndpoint"], resources=self._gpu.invoke_arns
                )
            )
        if "provider_secrets" in access:  # envelope encryption (shared.adapters.kms_envelope_...)
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[data.provider_secrets_key.key_arn],
                )
            )

    def _grant_documents(self, function: lambda_.Function) -> None:
        bucket, key = self._storage.bucket, self._storage.key
        objects = [bucket.arn_for_objects(f"{p}*") for p in (DOCUMENTS_PREFIX, RUNS_PREFIX)]
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], resources=objects
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={
                    "StringLike": {"s3:prefix": [f"{DOCUMENTS_PREFIX}*", f"{RUNS_PREFIX}*"]}
                },
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]
            )
        )
        bucket_id = Stack.of(self).get_logical_id(cast(CfnElement, bucket.node.default_child))
        suppress(
            function,
            "AwsSolutions-IAM5",
            "Object access is limited to the two key prefixes the domain works under "
            "(tenants/ uploads, runs/ saga artifacts); object keys are not known in advance.",
            applies_to=[
                f"Resource::<{bucket_id}.Arn>/{p}*" for p in (DOCUMENTS_PREFIX, RUNS_PREFIX)
            ],
        )

    def _acknowledge(self, function: lambda_.Function) -> None:
        suppress(
            function,
            "AwsSolutions-IAM4",
            "AWSLambdaBasicExecutionRole and AWSLambdaVPCAccessExecutionRole are the AWS-managed "
            "minimum for a function in a VPC (its own logs, its network interfaces).",
            applies_to=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole",
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole",
            ],
        )
        suppress(
            function,
            "AwsSolutions-IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions.",
            applies_to=["Resource::*"],
        )
        suppress(
            function,
            "AwsSolutions-L1",
            "Python 3.12 on purpose: the shared layer is built for it (manylinux wheels, "
            "--python-version 3.12) and the code base targets 3.11+; upgrade both together.",
        )
