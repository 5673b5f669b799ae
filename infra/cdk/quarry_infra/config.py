"""Stage configuration: defaults per stage (dev, prod), each overridable by CDK context.

``-c stage=prod`` picks the stage; any other key below (``-c gpu_instance_type=ml.g5.2xlarge``)
overrides that stage's default. Values from the command line arrive as strings and are parsed
here; values from ``cdk.json`` may already be typed.
"""

from __future__ import annotations

import json
from dataclasses import Field, dataclass, field, fields
from typing import Any, Literal

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Node

Stage = Literal["dev", "prod"]
STAGES: tuple[Stage, ...] = ("dev", "prod")
DOMAINS = ("query", "workflows", "kb_admin", "auth", "ingestion", "tuning")
RETENTION_DAYS = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


@dataclass(frozen=True)
class StageConfig:
    stage: Stage = "dev"
    # network
    nat_gateways: int = 1
    # data
    db_min_acu: float = 0.5
    db_max_acu: float = 4.0
    db_readers: int = 0
    db_iam_auth: bool = False
    db_backup_days: int = 1
    cache_engine: str = "valkey"
    cache_max_data_gb: int = 1
    cache_max_ecpu_per_s: int = 5000
    cache_snapshot_days: int = 0
    milvus_uri: str = ""
    milvus_port: int = 443
    # storage, logs
    versioned_bucket: bool = False
    log_retention_days: int = 7
    # functions
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    reserved_concurrency: dict[str, int] = field(default_factory=dict)
    log_level: str = "INFO"
    # api
    api_rate_per_s: int = 50
    api_burst: int = 100
    # gpu endpoint
    gpu_instance_type: str = "ml.g5.xlarge"
    gpu_min_instances: int = 1
    gpu_max_instances: int = 1
    gpu_invocations_per_instance: int = 600
    # Real-time endpoint that scales to zero instances when idle (an inference component);
    # gpu_min_instances is then unused. Off: gpu_min_instances stay warm.
    gpu_scale_to_zero: bool = True
    gpu_image_repository: str = ""
    gpu_image_tag: str = "latest"
    # tuning, alarms
    tuning_schedule: str = "rate(24 hours)"
    alarm_email: str = ""

    @property
    def is_prod(self) -> bool:
        return self.stage == "prod"

    @property
    def removal_policy(self) -> RemovalPolicy:
        return RemovalPolicy.RETAIN if self.is_prod else RemovalPolicy.DESTROY

    @property
    def log_retention(self) -> logs.RetentionDays:
        try:
            return RETENTION_DAYS[self.log_retention_days]
        except KeyError:
            raise ValueError(
                f"log_retention_days must be one of {sorted(RETENTION_DAYS)}"
            ) from None

    @property
    def prefix(self) -> str:
        """Names of named resources: ``quarry-dev-...``."""
        return f"quarry-{self.stage}"


STAGE_DEFAULTS: dict[Stage, dict[str, Any]] = {
    "dev": {},
    "prod": {
        "nat_gateways": 2,
        "db_min_acu": 2.0,
        "db_max_acu": 16.0,
        "db_readers": 1,
        "db_iam_auth": True,
        "db_backup_days": 14,
        "cache_max_data_gb": 5,
        "cache_max_ecpu_per_s": 20000,
        "cache_snapshot_days": 7,
        "versioned_bucket": True,
        "log_retention_days": 90,
        "api_rate_per_s": 500,
        "api_burst": 1000,
        "gpu_min_instances": 1,
        "gpu_max_instances": 4,
        "gpu_scale_to_zero": False,
    },
}


def load_config(node: Node) -> StageConfig:
    """The stage's defaults with every key that the CDK context sets on top."""
    stage = str(node.try_get_context("stage") or "dev")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    values: dict[str, Any] = {"stage": stage, **STAGE_DEFAULTS[stage]}
    for item in fields(StageConfig):
        if item.name == "stage":
            continue
        raw = node.try_get_context(item.name)
        if raw is not None:
            values[item.name] = _parse(item, raw)
    config = StageConfig(**values)
    unknown = set(config.reserved_concurrency) - set(DOMAINS)
    if unknown:
        raise ValueError(f"reserved_concurrency names unknown domains: {sorted(unknown)}")
    return config


def _parse(item: Field[Any], raw: Any) -> Any:
    name = item.name
    default = getattr(StageConfig(), name)
    if not isinstance(raw, str):
        return raw
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"context {name} must be true or false, not {raw!r}")
        return raw.lower() == "true"
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, dict):
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise ValueError(f"context {name} must be a JSON object")
        return {str(k): int(v) for k, v in parsed.items()}
    return raw
