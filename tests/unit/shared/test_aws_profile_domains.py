"""The aws profile checks only what the function's domain uses (``QUARRY_DOMAIN``)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.settings import Settings

pytestmark = pytest.mark.unit

# What every function gets from the stack (no secrets resolved, no per-domain values).
SHARED: dict[str, Any] = {
    "profile": "aws",
    "saga_runner": "stepfunctions",
    "event_bus": "eventbridge",
    "blob_store": "s3",
    "db": {"url": "postgresql+psycopg://quarry:pw@proxy:5432/quarry?sslmode=require"},
    "cache": {"redis_url": "rediss://quarry:pw@cache:6379"},
    "models": {"provider": "gpu_endpoint"},
    "aws": {
        "documents_bucket": "docs",
        "saga_state_machine_arn": "arn:aws:states:eu-west-1:1:stateMachine:s",
        "gpu_endpoint_name": "quarry-dev-gpu",
    },
}


def settings(domain: str | None, **overrides: Any) -> Settings:
    values = {**SHARED, **overrides}
    if domain is not None:
        values["domain"] = domain
    return Settings(_env_file=None, **values)


def test_tuning_needs_neither_milvus_nor_signing_secrets() -> None:
    assert settings("tuning").domain == "tuning"


def test_tuning_still_needs_its_database() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL URL"):
        settings("tuning", db={"url": None})


def test_the_query_function_needs_a_milvus_server() -> None:
    with pytest.raises(ValidationError, match="MILVUS_URI") as caught:
        settings("query")
    assert "JWT_SECRET" not in str(caught.value)
    assert settings("query", vectors={"milvus_uri": "https://milvus:443"}).domain == "query"


def test_the_auth_function_needs_its_secrets_and_kms() -> None:
    with pytest.raises(ValidationError) as caught:
        settings("auth")
    message = str(caught.value)
    for fragment in ("JWT_SECRET", "API_KEY_PEPPER", "SECRETS_CIPHER"):
        assert fragment in message
    assert "MILVUS_URI" not in message
    auth = {
        "jwt_secret": "j" * 40,
        "api_key_pepper": "p" * 40,
        "secrets_cipher": "kms",
        "kms_key_id": "arn:aws:kms:eu-west-1:1:key/k",
    }
    assert settings("auth", auth=auth).domain == "auth"


def test_without_a_domain_everything_is_checked() -> None:
    with pytest.raises(ValidationError) as caught:
        settings(None)
    message = str(caught.value)
    for fragment in ("MILVUS_URI", "JWT_SECRET", "SECRETS_CIPHER"):
        assert fragment in message


def test_the_gpu_endpoint_may_be_a_sagemaker_name_or_a_url() -> None:
    aws = {**SHARED["aws"], "gpu_endpoint_name": None}
    with pytest.raises(ValidationError, match="GPU_ENDPOINT_NAME"):
        settings("ingestion", aws=aws, vectors={"milvus_uri": "https://milvus:443"})
    models = {"provider": "gpu_endpoint", "gpu_endpoint_url": "https://gpu.internal"}
    ingestion = settings(
        "ingestion", aws=aws, models=models, vectors={"milvus_uri": "https://milvus:443"}
    )
    assert ingestion.models.gpu_endpoint_url == "https://gpu.internal"


def test_an_unknown_domain_is_refused() -> None:
    with pytest.raises(ValidationError, match="domain"):
        settings("billing")
