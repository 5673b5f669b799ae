"""The composition root: the one place that builds adapters from settings.

Everything is created lazily on first use, so a cold start pays only for what the request needs
(no model is loaded to answer a health check), and ``aclose`` releases whatever was created.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from shared.adapters.local_models import probe_local_models
from shared.db.engine import Database, PoolConfig
from shared.health import HealthCheck
from shared.observability.metrics import Dimensions, MetricsSink, PrometheusMetrics
from shared.settings import Settings, running_in_lambda

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from shared.adapters.circuit_breaker import CircuitBreaker
    from shared.adapters.gpu_endpoint_client import GpuEndpointClient
    from shared.adapters.gpu_endpoint_sagemaker import GpuEndpointSageMaker
    from shared.adapters.gpu_endpoint_transport import GpuEndpointTransport
    from shared.auth.services import AuthServices
    from shared.db.ingestion_repository import IngestionRepository
    from shared.db.kb_repository import KbRepository
    from shared.db.query_repository import QueryRepository
    from shared.db.tuning_repository import TuningRepository
    from shared.db.workflow_repository import WorkflowRepository
    from shared.ingestion.service import IngestionService
    from shared.kb.service import KbService
    from shared.ports.blob_store import BlobStore
    from shared.ports.embedder import Embedder
    from shared.ports.event_bus import EventBus
    from shared.ports.ocr import OcrEngine
    from shared.ports.reranker import Reranker
    from shared.ports.saga_launcher import SagaLauncher
    from shared.ports.task_tokens import TaskTokens
    from shared.ports.vector_store import VectorStore
    from shared.ports.workflow_state_machines import WorkflowStateMachines
    from shared.query.answer import AnswerGenerator
    from shared.query.cache import QueryCache
    from shared.query.event_log import QueryEventLog
    from shared.query.retrieval import Retriever
    from shared.query.service import QueryService
    from shared.sagas.runner import SagaRunner, SagaRunStore
    from shared.tuning.service import ThresholdProvider, TuningService
    from shared.workflows.agent import AgentLoop
    from shared.workflows.launcher import WorkflowLauncher
    from shared.workflows.nodes import AgentBudget, NodeExecutors
    from shared.workflows.service import WorkflowService
    from shared.workflows.task import WorkflowTasks
    from shared.workflows.tools import ToolRegistry

log = logging.getLogger(__name__)


class Container:
    def __init__(self, settings: Settings, *, metrics: MetricsSink | None = None) -> None:
        self.settings = settings
        self.metrics: MetricsSink = metrics or PrometheusMetrics(
            window=settings.observability.metrics_window
        )
        self._closers: list[tuple[str, Callable[[], Any]]] = []

    def _created(self, name: str, closer: Callable[[], Any]) -> None:
        self._closers.append((name, closer))

    # --- infrastructure adapters -----------------------------------------------------------
    @cached_property
    def database(self) -> Database:
        db = self.settings.db
        in_lambda = running_in_lambda()
        pool = PoolConfig(
            size=db.lambda_pool_size if in_lambda else db.pool_size,
            max_overflow=db.lambda_max_overflow if in_lambda else db.max_overflow,
            recycle_s=db.pool_recycle_s,
            timeout_s=db.pool_timeout_s,
            pre_ping=db.pool_pre_ping,
            warn_utilization=db.pool_warn_utilization,
        )
        database = Database(
            self.settings.database_url,
            pool,
            echo=db.echo,
            password=database_password(self.settings),
        )
        if isinstance(self.metrics, PrometheusMetrics):
            self.metrics.add_gauge_callback(lambda: _pool_gauges(database))
        self._created("database", database.aclose)
        return database

    @cached_property
    def redis(self) -> Redis | None:
        if not self.settings.cache.redis_url:
            return None
        from shared.adapters.redis_client import create_redis

        client = create_redis(self.settings.cache.redis_url)
        self._created("redis", client.aclose)
        return client

    @cached_property
    def vector_store(self) -> VectorStore:
        from shared.adapters.milvus_vector_store import MilvusVectorStore

        vectors = self.settings.vectors
        if self.settings.milvus_uri.endswith(".db"):
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = MilvusVectorStore(
            self.settings.milvus_uri,
            token=vectors.milvus_token.get_secret_value() if vectors.milvus_token else None,
        )
        self._created("vector_store", store.close)
        return store

    @cached_property
    def blob_store(self) -> BlobStore:
        if self.settings.blob_store == "s3":
            from shared.adapters.s3_blob_store import S3BlobStore

            bucket = self.settings.aws.documents_bucket
            if not bucket:
                from shared.errors import ConfigurationError

                raise ConfigurationError("QUARRY_AWS__DOCUMENTS_BUCKET is required for s3")
            return S3BlobStore(bucket, sse_kms=True, region=self.settings.aws.region)
        from shared.adapters.local_blob_store import LocalBlobStore

        return LocalBlobStore(self.settings.data_dir / "blobs")

    @cached_property
    def event_bus(self) -> EventBus:
        if self.settings.event_bus == "eventbridge":
            from shared.adapters.eventbridge_event_bus import EventBridgeEventBus

            return EventBridgeEventBus(
                self.settings.aws.event_bus_name or "default", region=self.settings.aws.region
            )
        from shared.adapters.in_process_event_bus import InProcessEventBus

        return InProcessEventBus()

    @cached_property
    def gpu_endpoint(self) -> GpuEndpointClient | None:
        """The health probe (``GET /health``) of a GPU endpoint reached over plain HTTP."""
        url = self.settings.models.gpu_endpoint_url
        if self.settings.models.provider != "gpu_endpoint" or not url:
            return None
        from shared.adapters.gpu_endpoint_client import GpuEndpointClient

        client = GpuEndpointClient(url)
        self._created("gpu_endpoint", client.aclose)
        return client

    @cached_property
    def gpu_sagemaker(self) -> GpuEndpointSageMaker | None:
        """The GPU endpoint as a SageMaker endpoint (``QUARRY_AWS__GPU_ENDPOINT_NAME``)."""
        models, aws = self.settings.models, self.settings.aws
        if models.provider != "gpu_endpoint" or not aws.gpu_endpoint_name:
            return None
        from shared.adapters.gpu_endpoint_sagemaker import GpuEndpointSageMaker

        return GpuEndpointSageMaker(
            aws.gpu_endpoint_name,
            inference_component=aws.gpu_inference_component,
            region=aws.region,
            timeout_s=models.gpu_timeout_s,
            retries=models.gpu_retries,
            breaker=self._gpu_breaker(),
        )

    @cached_property
    def gpu_transport(self) -> GpuEndpointTransport | None:
        """One transport for every model call to the GPU endpoint (SageMaker when it has a
        name, else HTTP to its URL): one connection pool and one circuit breaker, so
        embeddings, reranking and OCR fail fast together."""
        if self.gpu_sagemaker is not None:
            return self.gpu_sagemaker
        models = self.settings.models
        if models.provider != "gpu_endpoint" or not models.gpu_endpoint_url:
            return None
        from shared.adapters.gpu_endpoint_http import GpuEndpointHttp

        http = GpuEndpointHttp(
            models.gpu_endpoint_url,
            timeout_s=models.gpu_timeout_s,
            retries=models.gpu_retries,
            breaker=self._gpu_breaker(),
        )
        self._created("gpu_transport", http.close)
        return http

    def _gpu_breaker(self) -> CircuitBreaker:
        from shared.adapters.circuit_breaker import CircuitBreaker
        from shared.adapters.gpu_endpoint_transport import GPU_ENDPOINT_BREAKER

        models = self.settings.models
        return CircuitBreaker(
            GPU_ENDPOINT_BREAKER,
            failure_threshold=models.gpu_breaker_failures,
            reset_timeout_s=models.gpu_breaker_reset_s,
            metrics=self.metrics,
        )

    # --- models (lazy: built on first use, never at start-up) ------------------------------
    @cached_property
    def embedder(self) -> Embedder:
        models = self.settings.models
        if self.gpu_transport is not None:
            from shared.adapters.gpu_endpoint_embedder import GpuEndpointEmbedder

            return GpuEndpointEmbedder(self.gpu_transport, model_name=models.embedding_model)
        from shared.adapters.local_models import minilm_model_dir
        from shared.adapters.transformer_embedder import TransformerEmbedder

        return TransformerEmbedder(
            minilm_model_dir(), model_name=models.embedding_model, workers=models.torch_threads
        )

    @cached_property
    def ocr(self) -> OcrEngine | None:
        """The GPU endpoint's OCR in the cloud; locally RapidOCR, or None when the OCR
        packages are not installed."""
        import importlib.util

        if self.gpu_transport is not None:
            from shared.adapters.gpu_endpoint_ocr import GpuEndpointOcr

            return GpuEndpointOcr(self.gpu_transport)

        if importlib.util.find_spec("rapidocr") is None:
            return None
        from shared.adapters.rapidocr_ocr import RapidOcrEngine

        return RapidOcrEngine(intra_op_threads=self.settings.models.torch_threads or 2)

    # --- domain services -------------------------------------------------------------------
    @cached_property
    def kb_repository(self) -> KbRepository:
        from shared.db.kb_repository import KbRepository

        return KbRepository(self.database)

    @cached_property
    def ingestion_repository(self) -> IngestionRepository:
        from shared.db.ingestion_repository import IngestionRepository

        return IngestionRepository(self.database)

    @cached_property
    def kb_service(self) -> KbService:
        from shared.kb.service import KbService

        return KbService(
            self.kb_repository,
            self.vector_store,
            self.blob_store,
            self.event_bus,
            collection_prefix=self.settings.vectors.collection_prefix,
            audit=self.auth.repository,
        )

    @cached_property
    def saga_run_store(self) -> SagaRunStore:
        """Saga runs and their steps, as both runners record them (in-process, and the Step
        Functions tasks)."""
        from shared.db.saga_store import SqlSagaRunStore

        return SqlSagaRunStore(self.database)

    @cached_property
    def ingestion_service(self) -> IngestionService:
        from shared.ingestion.extraction import ExtractionLimits
        from shared.ingestion.saga import SAGA_NAME, IngestionDeps, IngestionSteps
        from shared.ingestion.service import IngestionService
        from shared.sagas.runner import SagaRunner

        limits = self.settings.ingestion
        deps = IngestionDeps(
            repository=self.ingestion_repository,
            blobs=self.blob_store,
            vectors=self.vector_store,
            events=self.event_bus,
            embedder=lambda: self.embedder,
            ocr=lambda: self.ocr,
            limits=ExtractionLimits(
                max_file_bytes=limits.max_file_bytes,
                max_pdf_pages=limits.max_pdf_pages,
                max_image_pixels=limits.max_image_pixels,
            ),
            profile_of=self.kb_service.profile,
        )
        store = self.saga_run_store
        runner = SagaRunner(store)
        return IngestionService(
            steps=IngestionSteps(deps),
            runner=runner,
            launcher=self._saga_launcher(SAGA_NAME, store, runner),
            kbs=self.kb_repository,
            repository=self.ingestion_repository,
            max_file_bytes=limits.max_file_bytes,
        )

    def _saga_launcher(self, saga: str, store: SagaRunStore, runner: SagaRunner) -> SagaLauncher:
        """Where new runs of ``saga`` execute: in-process (``runner``) or on Step Functions."""
        if self.settings.saga_runner != "stepfunctions":
            return runner
        arn = self.settings.aws.saga_state_machine_arn
        if not arn:
            from shared.errors import ConfigurationError

            raise ConfigurationError(
                "QUARRY_SAGA_RUNNER=stepfunctions needs QUARRY_AWS__SAGA_STATE_MACHINE_ARN"
            )
        from shared.adapters.stepfunctions_saga_launcher import StepFunctionsSagaLauncher

        return StepFunctionsSagaLauncher(store, arn, saga=saga, region=self.settings.aws.region)

    @cached_property
    def reranker(self) -> Reranker | None:
        """The cross-encoder: on the GPU endpoint only (no local weights ship in a package)."""
        if self.gpu_transport is None:
            return None
        from shared.adapters.gpu_endpoint_reranker import GpuEndpointReranker

        reranker: Reranker = GpuEndpointReranker(self.gpu_transport)
        return reranker

    @cached_property
    def answer_generator(self) -> AnswerGenerator | None:
        llm = self.settings.llm
        if llm.provider != "bedrock":
            return None
        from shared.adapters.bedrock_answer_generator import BedrockAnswerGenerator

        return BedrockAnswerGenerator(
            llm.bedrock_model_id, max_tokens=llm.max_tokens, region=self.settings.aws.region
        )

    @cached_property
    def retriever(self) -> Retriever:
        from shared.query.retrieval import Retriever

        query = self.settings.query
        return Retriever(
            self.database,
            self.vector_store,
            lambda: self.embedder,
            lambda: self.reranker,
            dense_weight=query.dense_weight,
            keyword_weight=query.keyword_weight,
        )

    @cached_property
    def query_cache(self) -> QueryCache:
        from shared.query.cache import QueryCache

        l2 = None
        if self.redis is not None:
            from shared.adapters.redis_key_value_store import RedisKeyValueStore

            l2 = RedisKeyValueStore(self.redis)
        return QueryCache.from_settings(self.settings.cache, l2, self.metrics)

    @cached_property
    def query_repository(self) -> QueryRepository:
        from shared.db.query_repository import QueryRepository

        return QueryRepository(self.database)

    @cached_property
    def query_event_log(self) -> QueryEventLog:
        from shared.query.event_log import QueryEventLog

        # In Lambda the process may freeze after the response: write each event at once.
        event_log = QueryEventLog(
            self.query_repository, max_buffer=1 if running_in_lambda() else 200
        )
        self._created("query_event_log", event_log.aclose)
        return event_log

    @cached_property
    def tuning_repository(self) -> TuningRepository:
        from shared.db.tuning_repository import TuningRepository

        return TuningRepository(self.database)

    @cached_property
    def tuning_service(self) -> TuningService:
        from shared.tuning.service import tuning_service_for

        return tuning_service_for(self.database, self.settings)

    @cached_property
    def threshold_provider(self) -> ThresholdProvider:
        from shared.tuning.service import threshold_provider_for

        return threshold_provider_for(self.database, self.settings)

    @cached_property
    def query_service(self) -> QueryService:
        from shared.query.plans import plans_from_settings
        from shared.query.service import QueryService

        return QueryService(
            kbs=self.kb_service,
            retriever=self.retriever,
            cache=self.query_cache,
            events=self.query_event_log,
            thresholds=self.threshold_provider,
            plans=plans_from_settings(self.settings.query),
            generator=lambda: self.answer_generator,
            metrics=self.metrics,
            max_query_chars=self.settings.query.max_query_chars,
        )

    # --- workflows -------------------------------------------------------------------------
    @cached_property
    def workflow_repository(self) -> WorkflowRepository:
        from shared.db.workflow_repository import WorkflowRepository

        return WorkflowRepository(self.database)

    @cached_property
    def bedrock_runtime(self) -> Any:
        """The boto3 ``bedrock-runtime`` client (workflow agents)."""
        import boto3

        return boto3.client("bedrock-runtime", region_name=self.settings.aws.region)

    def _agent_loop(self, tools: ToolRegistry, budget: AgentBudget) -> AgentLoop:
        from shared.workflows.agent import AgentLoop

        return AgentLoop(
            self.bedrock_runtime,
            model_id=self.settings.llm.bedrock_model_id,
            tools=tools,
            max_steps=budget.max_steps,
            max_tokens=budget.max_tokens,
            time_budget_s=budget.time_budget_s,
        )

    @cached_property
    def workflow_executors(self) -> NodeExecutors:
        """The leaf node types, for the local engine and for Step Functions tasks alike."""
        from shared.workflows.nodes import AgentBudget, NodeExecutors
        from shared.workflows.safe_http import HttpPolicy, SafeHttpClient
        from shared.workflows.tools import default_tool_registry

        workflows = self.settings.workflows
        http = SafeHttpClient(HttpPolicy.from_settings(workflows))
        return NodeExecutors(
            query_service=lambda: self.query_service,
            kbs=lambda: self.kb_service,
            answer_generator=lambda: self.answer_generator,
            tools=default_tool_registry(),
            http_client=lambda: http,
            secrets=lambda: self.auth.provider_secrets,
            agent_loop=self._agent_loop if self.settings.llm.provider == "bedrock" else None,
            agent_budget=AgentBudget(
                max_steps=workflows.agent_max_steps,
                max_tokens=workflows.agent_max_tokens,
                time_budget_s=workflows.agent_time_budget_s,
            ),
        )

    @cached_property
    def workflow_tasks(self) -> WorkflowTasks:
        """Runs the tasks of workflow runs on Step Functions (``shared.workflows.task``)."""
        from shared.workflows.task import WorkflowTasks

        workflows = self.settings.workflows
        return WorkflowTasks(
            self.workflow_repository,
            self.workflow_executors,
            self.metrics,
            default_timeout_s=workflows.default_node_timeout_s,
            default_approval_timeout_s=workflows.default_approval_timeout_s,
            max_map_items=workflows.max_map_items,
        )

    @cached_property
    def workflow_state_machines(self) -> WorkflowStateMachines:
        """Workflow runs on Step Functions: a state machine per workflow version."""
        from shared.adapters.stepfunctions_workflow_state_machines import (
            StepFunctionsWorkflowStateMachines,
        )
        from shared.errors import ConfigurationError

        aws, workflows = self.settings.aws, self.settings.workflows
        function = aws.workflow_function or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        if not (aws.workflow_state_machine_prefix and aws.workflow_role_arn and function):
            raise ConfigurationError(
                "workflow runs on Step Functions need QUARRY_AWS__WORKFLOW_STATE_MACHINE_PREFIX, "
                "QUARRY_AWS__WORKFLOW_ROLE_ARN and QUARRY_AWS__WORKFLOW_FUNCTION (in Lambda: "
                "the running function)"
            )
        return StepFunctionsWorkflowStateMachines(
            arn_prefix=aws.workflow_state_machine_prefix,
            role_arn=aws.workflow_role_arn,
            function=function,
            default_timeout_s=workflows.default_node_timeout_s,
            default_approval_timeout_s=workflows.default_approval_timeout_s,
            region=aws.region,
        )

    @cached_property
    def workflow_task_tokens(self) -> TaskTokens:
        """Sends approval decisions to the state machine tasks waiting for them."""
        from shared.adapters.stepfunctions_task_tokens import StepFunctionsTaskTokens

        return StepFunctionsTaskTokens(region=self.settings.aws.region)

    @cached_property
    def workflow_service(self) -> WorkflowService:
        from shared.workflows.definition import ValidationRules
        from shared.workflows.service import WorkflowService

        service = WorkflowService(
            self.workflow_repository,
            self._workflow_launcher(),
            self.auth.repository,
            ValidationRules.from_settings(
                self.settings, tool_names=self.workflow_executors.tool_names
            ),
            max_input_bytes=self.settings.workflows.max_input_bytes,
        )
        self._created("workflow_service", service.aclose)
        return service

    @property
    def runs_workflows_in_process(self) -> bool:
        """Whether workflow runs execute in this process (the engine), or on Step Functions:
        where the sagas run (``QUARRY_SAGA_RUNNER``)."""
        return self.settings.saga_runner != "stepfunctions"

    def _workflow_launcher(self) -> WorkflowLauncher:
        if not self.runs_workflows_in_process:
            from shared.workflows.launcher import StepFunctionsWorkflowLauncher

            return StepFunctionsWorkflowLauncher(
                self.workflow_repository,
                self.workflow_state_machines,
                self.workflow_task_tokens,
            )
        from shared.workflows.engine import WorkflowEngine
        from shared.workflows.launcher import LocalWorkflowLauncher

        workflows = self.settings.workflows
        engine = WorkflowEngine(
            self.workflow_repository,
            self.workflow_executors,
            self.metrics,
            default_timeout_s=workflows.default_node_timeout_s,
            default_approval_timeout_s=workflows.default_approval_timeout_s,
            max_map_items=workflows.max_map_items,
        )
        return LocalWorkflowLauncher(engine)

    # --- auth ------------------------------------------------------------------------------
    @cached_property
    def auth(self) -> AuthServices:
        from shared.auth.services import AuthServices

        return AuthServices(self.settings, self.database, redis=lambda: self.redis)

    # --- health and shutdown ---------------------------------------------------------------
    def health_checks(self) -> list[HealthCheck]:
        checks = [
            HealthCheck("database", self.database.ping),
            HealthCheck("vector_store", self.vector_store.ping),
        ]
        if self.redis is not None:
            from shared.adapters.redis_client import ping_redis

            redis = self.redis
            checks.append(HealthCheck("redis", lambda: ping_redis(redis), required=False))
        if self.gpu_sagemaker is not None:
            checks.append(HealthCheck("models", self.gpu_sagemaker.health))
        elif self.gpu_endpoint is not None:
            checks.append(HealthCheck("models", self.gpu_endpoint.health))
        else:
            checks.append(HealthCheck("models", probe_local_models))
        return checks

    async def aclose(self) -> None:
        """Close what was created, newest first; one failure does not stop the rest."""
        while self._closers:
            name, closer = self._closers.pop()
            try:
                result = closer()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("closing %s failed", name)


def database_password(settings: Settings) -> Callable[[], str] | None:
    """With IAM database authentication (``QUARRY_AWS__DB_IAM_AUTH``): what makes the password
    (an IAM token) of each new connection; None: the URL's password."""
    if not settings.aws.db_iam_auth:
        return None
    from shared.adapters.rds_iam_auth import RdsIamAuthToken

    return RdsIamAuthToken(settings.database_url, region=settings.aws.region)


def _pool_gauges(database: Database) -> list[tuple[str, float, Dimensions]]:
    usage = database.pool_usage()
    if usage is None:
        return []
    return [
        ("db_pool_checked_out", usage.checked_out, ()),
        ("db_pool_overflow", usage.overflow, ()),
        ("db_pool_capacity", usage.capacity, ()),
        ("db_pool_utilization", usage.utilization, ()),
        ("db_pool_wait_ms_max", usage.wait_ms_max, ()),
        ("db_pool_waits", usage.waits, ()),
    ]
