"""Quarry's one settings model.

Every value comes from a ``QUARRY_*`` environment variable (nested groups use ``__``, e.g.
``QUARRY_DB__POOL_SIZE``) or an optional ``.env`` file. The ``local`` profile needs no setup: every
adapter is embedded and keeps its files under ``QUARRY_DATA_DIR``. The ``aws`` profile refuses to
start with an embedded adapter or a default secret. In the cloud, secrets come from the Secrets
Manager ARNs in ``QUARRY_AWS__*_SECRET_ARN`` (``shared.adapters.aws_secrets_source``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.domains import CAPABILITIES, DOMAIN_CAPABILITIES, Domain

# A development-only signing secret. The aws profile refuses it; see ``_check_aws_profile``.
DEFAULT_JWT_SECRET = "quarry-local-development-secret-change-me!"  # noqa: S105
DEFAULT_API_KEY_PEPPER = "quarry-local-development-pepper-change-me!"

Profile = Literal["local", "aws"]


def running_in_lambda() -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: SQLite file `quarry.db` in the data dir. "
        "PostgreSQL: `postgresql+psycopg://user@host:5432/db`.",
    )
    pool_size: int = Field(default=20, ge=1, description="Connections kept open per process.")
    max_overflow: int = Field(default=30, ge=0, description="Extra connections under burst.")
    pool_recycle_s: int = Field(default=3600, ge=1, description="Reconnect after this age.")
    pool_timeout_s: float = Field(default=30.0, gt=0, description="Wait for a free connection.")
    pool_pre_ping: bool = Field(default=True, description="Test a connection before using it.")
    lambda_pool_size: int = Field(
        default=1, ge=1, description="Pool size inside Lambda (RDS Proxy does the pooling)."
    )
    lambda_max_overflow: int = Field(default=1, ge=0, description="Overflow inside Lambda.")
    pool_warn_utilization: float = Field(
        default=0.8, gt=0, le=1, description="Log a warning above this share of the pool in use."
    )
    echo: bool = Field(default=False, description="Log every SQL statement.")
    auto_migrate: bool = Field(
        default=True, description="`quarry serve` applies migrations at start."
    )


class CacheSettings(BaseModel):
    redis_url: str | None = Field(
        default=None, description="Redis URL for the L2 cache and rate limits; unset = L1 only."
    )
    l1_max_entries: int = Field(default=1000, ge=1, description="In-process LRU size.")
    l1_ttl_s: int = Field(default=300, ge=1, description="In-process entry lifetime.")
    l2_promote_after_hits: int = Field(
        default=3, ge=1, description="Copy an entry to Redis after this many accesses."
    )
    ttl_fast_s: int = Field(default=3600, ge=1, description="L2 lifetime of a FAST result.")
    ttl_balanced_s: int = Field(default=1800, ge=1, description="L2 lifetime of a BALANCED result.")
    ttl_deep_s: int = Field(default=7200, ge=1, description="L2 lifetime of a DEEP result.")


class VectorSettings(BaseModel):
    milvus_uri: str | None = Field(
        default=None,
        description="Milvus URI. Default: Milvus Lite file `milvus.db` in the data dir; "
        "`http(s)://host:19530` for a server or Zilliz.",
    )
    milvus_token: SecretStr | None = Field(default=None, description="Milvus / Zilliz token.")
    collection_prefix: str = Field(default="quarry", description="Prefix of collection names.")


class ModelSettings(BaseModel):
    provider: Literal["local", "gpu_endpoint"] = Field(
        default="local", description="`local`: in-process CPU models; `gpu_endpoint`: over HTTP."
    )
    gpu_endpoint_url: str | None = Field(default=None, description="Base URL of the GPU endpoint.")
    embedding_model: str = Field(default="all-MiniLM-L6-v2", description="Default embedding model.")
    gpu_timeout_s: float = Field(default=30.0, gt=0, description="GPU endpoint request timeout.")
    gpu_retries: int = Field(default=2, ge=0, description="Retries of a failed GPU endpoint call.")
    gpu_breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open the circuit."
    )
    gpu_breaker_reset_s: float = Field(
        default=30.0, gt=0, description="An open circuit waits this long before a trial call."
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        description="Embedding worker threads, each running torch with one intra-op thread; "
        "0 = one per core.",
    )


class QuerySettings(BaseModel):
    fast_budget_ms: int = Field(default=1000, ge=10, description="FAST mode time budget.")
    balanced_budget_ms: int = Field(default=3000, ge=10, description="BALANCED time budget.")
    deep_budget_ms: int = Field(default=15000, ge=10, description="DEEP mode time budget.")
    fast_top_k: int = Field(default=5, ge=1, le=100, description="FAST results returned.")
    balanced_top_k: int = Field(default=10, ge=1, le=100, description="BALANCED results.")
    deep_top_k: int = Field(default=15, ge=1, le=100, description="DEEP results returned.")
    fast_threshold: float = Field(
        default=0.35, ge=0, le=1, description="Complexity below: FAST (until the tuner sets one)."
    )
    deep_threshold: float = Field(
        default=0.70, ge=0, le=1, description="Complexity at or above: DEEP (until tuned)."
    )
    dense_weight: float = Field(default=1.0, ge=0, description="Dense list weight in fusion.")
    keyword_weight: float = Field(default=1.0, ge=0, description="Keyword list weight in fusion.")
    max_query_chars: int = Field(default=2000, ge=1, description="Longest query accepted.")
    max_batch_queries: int = Field(default=1000, ge=1, description="Most queries per batch.")


class TuningSettings(BaseModel):
    target_fast: float = Field(default=0.45, ge=0, le=1, description="Target share of FAST.")
    target_balanced: float = Field(default=0.35, ge=0, le=1, description="Target BALANCED share.")
    target_deep: float = Field(default=0.20, ge=0, le=1, description="Target share of DEEP.")
    min_samples: int = Field(default=1000, ge=1, description="Fewest logged queries to re-fit.")
    max_step: float = Field(default=0.05, gt=0, le=1, description="Largest threshold move a run.")
    window_hours: int = Field(default=168, ge=1, description="Logged queries considered.")
    refresh_s: int = Field(default=60, ge=1, description="Router re-reads its config this often.")


class LlmSettings(BaseModel):
    provider: Literal["none", "bedrock"] = Field(
        default="none", description="`none`: extractive answers; `bedrock`: generated answers."
    )
    bedrock_model_id: str = Field(
        default="anthropic.claude-3-haiku-20240307-v1:0", description="Bedrock model id."
    )
    max_tokens: int = Field(default=512, ge=16, le=8192, description="Answer length limit.")
    timeout_s: float = Field(default=20.0, gt=0, description="Generation timeout.")


class IngestionSettings(BaseModel):
    max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1, description="Largest upload.")
    max_pdf_pages: int = Field(default=1000, ge=1, description="Most pages read from one PDF.")
    max_image_pixels: int = Field(
        default=60_000_000, ge=1, description="Largest image (decompression-bomb guard)."
    )
    chunk_size_tokens: int = Field(default=256, ge=16, description="Default chunk size.")
    chunk_overlap_tokens: int = Field(default=32, ge=0, description="Default chunk overlap.")


class PreviousSigningKey(BaseModel):
    """A key that no longer signs but still verifies the tokens it signed (key rotation)."""

    kid: str = Field(description="The key id tokens carry in their header.")
    algorithm: Literal["HS256", "RS256", "ES256"] = Field(description="The key's one algorithm.")
    secret: SecretStr | None = Field(default=None, description="HS256: the old secret.")
    public_key_pem: str | None = Field(default=None, description="RS256/ES256: the public key.")


class AuthSettings(BaseModel):
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = Field(
        default="HS256", description="Access-token signing algorithm."
    )
    jwt_secret: SecretStr = Field(
        default=SecretStr(DEFAULT_JWT_SECRET), description="HS256 signing secret (>= 32 bytes)."
    )
    jwt_private_key: SecretStr | None = Field(
        default=None, description="RS256/ES256: the PEM private key that signs access tokens."
    )
    jwt_key_id: str = Field(default="k1", description="`kid` of the active signing key.")
    jwt_previous_keys: list[PreviousSigningKey] = Field(
        default_factory=list,
        description="Retired keys that still verify (JSON list of {kid, algorithm, secret | "
        "public_key_pem}); keep each for at least one access-token lifetime.",
    )
    jwt_issuer: str = Field(default="quarry", description="`iss` of access tokens.")
    jwt_audience: str = Field(default="quarry-api", description="`aud` of access tokens.")
    jwt_leeway_s: int = Field(default=30, ge=0, le=300, description="Clock-skew allowance.")
    access_token_ttl_s: int = Field(default=900, ge=60, description="Access token lifetime.")
    refresh_token_ttl_s: int = Field(
        default=7 * 24 * 3600, ge=300, description="Refresh token lifetime."
    )
    api_key_pepper: SecretStr = Field(
        default=SecretStr(DEFAULT_API_KEY_PEPPER),
        description="Server-side secret in API key hashes (>= 32 bytes).",
    )
    secrets_cipher: Literal["local", "kms"] = Field(
        default="local", description="Provider-secret encryption: a local key file or AWS KMS."
    )
    secrets_key_file: Path | None = Field(
        default=None, description="AES-GCM key file (default: `<data_dir>/secrets.key`)."
    )
    kms_key_id: str | None = Field(default=None, description="KMS key for provider secrets.")
    allow_registration: bool = Field(
        default=True, description="Whether `POST /v1/auth/register` may create new tenants."
    )
    password_time_cost: int = Field(default=3, ge=1, description="argon2id passes.")
    password_memory_kib: int = Field(default=64 * 1024, ge=8 * 1024, description="argon2id KiB.")
    password_parallelism: int = Field(default=4, ge=1, description="argon2id lanes.")
    login_rate_limit: int = Field(
        default=10, ge=1, description="Logins per window per client IP and email."
    )
    register_rate_limit: int = Field(
        default=5, ge=1, description="Registrations per window per client IP."
    )
    query_rate_limit: int = Field(default=120, ge=1, description="Queries per window per caller.")
    default_rate_limit: int = Field(
        default=600, ge=1, description="Requests per window per caller on every other route."
    )
    rate_limit_window_s: float = Field(default=60.0, gt=0, description="Rate-limit window.")


class WorkflowSettings(BaseModel):
    max_nodes: int = Field(
        default=100, ge=1, description="Most nodes in one workflow, nested ones included."
    )
    max_map_concurrency: int = Field(
        default=16, ge=1, description="Highest `max_concurrency` a map node may ask for."
    )
    max_map_items: int = Field(default=1000, ge=1, description="Most items one map node runs.")
    default_node_timeout_s: float = Field(
        default=60.0, gt=0, description="Timeout of a node attempt that sets none."
    )
    default_approval_timeout_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="How long an approval waits when unset."
    )
    max_input_bytes: int = Field(
        default=256 * 1024, ge=1, description="Largest run input (JSON-encoded)."
    )
    max_definition_bytes: int = Field(
        default=256 * 1024, ge=1, description="Largest workflow definition (JSON or YAML)."
    )
    max_wait_s: float = Field(
        default=30.0, gt=0, description="Longest a `wait: true` run request waits for the run."
    )
    http_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Host names HTTP nodes may call even when they resolve to private addresses.",
    )
    http_allow_cidrs: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) HTTP nodes may call although private, e.g. `10.1.0.0/16`.",
    )
    http_timeout_s: float = Field(default=10.0, gt=0, description="HTTP node request timeout.")
    http_max_response_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Largest HTTP node response body read."
    )
    http_max_redirects: int = Field(
        default=3, ge=0, description="Redirects an HTTP node follows, each re-checked."
    )
    agent_max_steps: int = Field(default=8, ge=1, description="Most model calls of one agent run.")
    agent_max_tokens: int = Field(
        default=8000, ge=1, description="Most input + output tokens of one agent run."
    )
    agent_time_budget_s: float = Field(
        default=60.0, gt=0, description="Longest time one agent run may take."
    )
    recover_interrupted_runs_on_start: bool = Field(
        default=True,
        description="When the local server starts and runs execute in-process "
        "(`QUARRY_SAGA_RUNNER=local`), mark runs still `running` as `failed` (code "
        "`interrupted`; resumable): the process that ran them is gone. Turn it off when "
        "several processes share the database, or one would fail another's live runs.",
    )


class ServerSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="`quarry serve` bind address.")
    port: int = Field(default=8080, ge=1, le=65535, description="`quarry serve` port.")
    max_body_bytes: int = Field(
        default=60 * 1024 * 1024, ge=1, description="Largest request body accepted."
    )
    cors_allow_origins: list[str] = Field(
        default_factory=list, description="CORS allow-list; empty = CORS off."
    )


class ObservabilitySettings(BaseModel):
    log_level: str = Field(default="INFO", description="Log level.")
    slow_operation_ms: float = Field(
        default=500.0, gt=0, description="Log a warning for operations slower than this."
    )
    health_timeout_s: float = Field(
        default=2.0, gt=0, description="Per-dependency timeout of `/health/ready`."
    )
    metrics_window: int = Field(
        default=2048, ge=16, description="Latency samples kept per route for p50/p95/p99."
    )
    metrics_namespace: str = Field(default="Quarry", description="EMF / CloudWatch namespace.")


class AwsSettings(BaseModel):
    region: str | None = Field(default=None, description="AWS region (default: boto3's).")
    documents_bucket: str | None = Field(default=None, description="S3 bucket for documents.")
    event_bus_name: str | None = Field(default=None, description="EventBridge bus for events.")
    saga_state_machine_arn: str | None = Field(
        default=None, description="Step Functions state machine running the ingestion saga."
    )
    workflow_state_machine_prefix: str | None = Field(
        default=None,
        description="ARN prefix of the workflows' state machines, "
        "`arn:aws:states:<region>:<account>:stateMachine:<name prefix>`: each workflow version "
        "runs on its own `<name prefix>-<digest>-v<version>`.",
    )
    workflow_role_arn: str | None = Field(
        default=None, description="IAM role the workflows' state machines run as."
    )
    workflow_function: str | None = Field(
        default=None,
        description="Function the workflows' state machines invoke for each task (name or ARN; "
        "default in Lambda: the running function).",
    )
    gpu_endpoint_name: str | None = Field(
        default=None,
        description="SageMaker endpoint of the GPU model service: model calls become SigV4-signed "
        "`invoke_endpoint` calls (instead of HTTP to `QUARRY_MODELS__GPU_ENDPOINT_URL`).",
    )
    gpu_inference_component: str | None = Field(
        default=None,
        description="Inference component on that endpoint that holds the GPU models (an "
        "endpoint that scales to zero): each `invoke_endpoint` call names it.",
    )
    db_secret_arn: str | None = Field(
        default=None,
        description="Secrets Manager secret of the database (RDS JSON: username, password, host, "
        "port, dbname), read at start into `QUARRY_DB__URL`.",
    )
    db_iam_auth: bool = Field(
        default=False,
        description="Authenticate to the database with an IAM token "
        "(`rds.generate_db_auth_token`, made for every new connection), not a password.",
    )
    redis_secret_arn: str | None = Field(
        default=None,
        description="Secret `{username, password}`: the AUTH of `QUARRY_CACHE__REDIS_URL`.",
    )
    milvus_secret_arn: str | None = Field(
        default=None, description="Secret `{uri, token}`: the Milvus server and its token."
    )
    jwt_secret_arn: str | None = Field(
        default=None,
        description="Secret `{jwt_secret}`: `QUARRY_AUTH__JWT_SECRET`.",
    )
    api_key_pepper_secret_arn: str | None = Field(
        default=None,
        description="Secret holding `QUARRY_AUTH__API_KEY_PEPPER`: the pepper itself, or JSON "
        "`{api_key_pepper}`.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUARRY_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    profile: Profile = Field(default="local", description="`local` or `aws`.")
    domain: Domain | None = Field(
        default=None,
        description="The domain function this process serves (the CDK app sets it): the aws "
        "profile checks only what that domain uses. Unset: everything.",
    )
    data_dir: Path = Field(
        default=Path(".quarry"), description="Where local adapters keep their files."
    )
    saga_runner: Literal["local", "stepfunctions"] = Field(
        default="local",
        description="Where sagas and workflow runs execute: in this process, or on Step "
        "Functions (workflows also need `QUARRY_AWS__WORKFLOW_*`).",
    )
    event_bus: Literal["local", "eventbridge"] = Field(
        default="local", description="Where domain events go."
    )
    blob_store: Literal["local", "s3"] = Field(
        default="local", description="Where uploaded documents are kept."
    )
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    vectors: VectorSettings = Field(default_factory=VectorSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    ingestion: IngestionSettings = Field(default_factory=IngestionSettings)
    query: QuerySettings = Field(default_factory=QuerySettings)
    tuning: TuningSettings = Field(default_factory=TuningSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    workflows: WorkflowSettings = Field(default_factory=WorkflowSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, with the secrets named by ``QUARRY_AWS__*_SECRET_ARN`` between
        the keyword arguments and the environment (they complete the environment's values)."""
        from shared.adapters.aws_secrets_source import AwsSecretsSource

        secrets = AwsSecretsSource(settings_cls, configured=(env_settings, dotenv_settings))
        return init_settings, secrets, env_settings, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _check_profile(self) -> Settings:
        if len(self.auth.jwt_secret.get_secret_value().encode()) < 32:
            raise ValueError("auth.jwt_secret must be at least 32 bytes")
        if len(self.auth.api_key_pepper.get_secret_value().encode()) < 32:
            raise ValueError("auth.api_key_pepper must be at least 32 bytes")
        if self.auth.jwt_algorithm != "HS256" and self.auth.jwt_private_key is None:
            raise ValueError(f"auth.jwt_algorithm {self.auth.jwt_algorithm} needs jwt_private_key")
        if self.auth.secrets_cipher == "kms" and not self.auth.kms_key_id:
            raise ValueError("auth.secrets_cipher=kms needs auth.kms_key_id")
        if self.profile == "aws":
            problems = _aws_profile_problems(self)
            if problems:
                raise ValueError("the aws profile cannot start: " + "; ".join(problems))
        return self

    @property
    def database_url(self) -> str:
        if self.db.url:
            return self.db.url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'quarry.db').as_posix()}"

    @property
    def milvus_uri(self) -> str:
        return self.vectors.milvus_uri or (self.data_dir / "milvus.db").as_posix()

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _aws_profile_problems(s: Settings) -> list[str]:
    """What keeps this process from running in the cloud: only the capabilities its domain
    uses are checked (the tuning function needs no GPU endpoint, only auth signs tokens)."""
    needs = DOMAIN_CAPABILITIES[s.domain] if s.domain else frozenset(CAPABILITIES)
    problems: list[str] = []
    url = s.db.url or ""
    if "db" in needs and not url.startswith("postgresql"):
        problems.append("QUARRY_DB__URL must be a PostgreSQL URL")
    elif "db" in needs and "sslmode=require" not in url and "sslmode=verify" not in url:
        problems.append("QUARRY_DB__URL must use sslmode=require (or verify-full)")
    if "cache" in needs and not s.cache.redis_url:
        problems.append("QUARRY_CACHE__REDIS_URL must be set")
    if "vectors" in needs and not (s.vectors.milvus_uri or "").startswith(("http://", "https://")):
        problems.append("QUARRY_VECTORS__MILVUS_URI must be a Milvus server URI")
    if "models" in needs and (
        s.models.provider != "gpu_endpoint"
        or not (s.models.gpu_endpoint_url or s.aws.gpu_endpoint_name)
    ):
        problems.append(
            "QUARRY_MODELS__PROVIDER=gpu_endpoint with a GPU endpoint URL or "
            "QUARRY_AWS__GPU_ENDPOINT_NAME is required"
        )
    if "sagas" in needs and (s.saga_runner != "stepfunctions" or not s.aws.saga_state_machine_arn):
        problems.append("QUARRY_SAGA_RUNNER=stepfunctions with a state machine ARN is required")
    if "events" in needs and s.event_bus != "eventbridge":
        problems.append("QUARRY_EVENT_BUS must be eventbridge")
    if "documents" in needs and (s.blob_store != "s3" or not s.aws.documents_bucket):
        problems.append("QUARRY_BLOB_STORE=s3 with QUARRY_AWS__DOCUMENTS_BUCKET is required")
    if "jwt" in needs:
        if s.auth.jwt_algorithm == "HS256" and s.auth.jwt_secret.get_secret_value() == (
            DEFAULT_JWT_SECRET
        ):
            problems.append("QUARRY_AUTH__JWT_SECRET must not be the development default")
        if s.auth.api_key_pepper.get_secret_value() == DEFAULT_API_KEY_PEPPER:
            problems.append("QUARRY_AUTH__API_KEY_PEPPER must not be the development default")
    if "provider_secrets" in needs and s.auth.secrets_cipher != "kms":
        problems.append("QUARRY_AUTH__SECRETS_CIPHER must be kms (with QUARRY_AUTH__KMS_KEY_ID)")
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (Lambda cold start / server start)."""
    return Settings()
