from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import DEFAULT_JWT_SECRET, Settings
from shared.settings_reference import render_reference

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def aws_values(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "profile": "aws",
        "saga_runner": "stepfunctions",
        "event_bus": "eventbridge",
        "blob_store": "s3",
        "db": {"url": "postgresql+psycopg://quarry@db:5432/quarry?sslmode=require"},
        "cache": {"redis_url": "rediss://cache:6379/0"},
        "vectors": {"milvus_uri": "https://milvus:19530"},
        "models": {"provider": "gpu_endpoint", "gpu_endpoint_url": "https://gpu.internal"},
        "auth": {
            "jwt_secret": "x" * 48,
            "api_key_pepper": "p" * 48,
            "secrets_cipher": "kms",
            "kms_key_id": "alias/quarry-secrets",
        },
        "aws": {"documents_bucket": "docs", "saga_state_machine_arn": "arn:aws:states:sm"},
    }
    values.update(overrides)
    return values


def test_local_defaults_need_no_setup(tmp_path: Path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert s.profile == "local"
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path.as_posix()}/quarry.db"
    assert s.milvus_uri == f"{tmp_path.as_posix()}/milvus.db"
    assert s.cache.redis_url is None
    assert s.models.provider == "local"
    assert s.db.pool_size == 20
    assert s.db.max_overflow == 30
    assert s.db.pool_recycle_s == 3600
    assert s.db.pool_pre_ping is True


def test_environment_overrides_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARRY_DB__POOL_SIZE", "7")
    monkeypatch.setenv("QUARRY_CACHE__REDIS_URL", "redis://localhost:6379/1")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.db.pool_size == 7
    assert s.cache.redis_url == "redis://localhost:6379/1"


def test_aws_profile_accepts_real_adapters() -> None:
    s = Settings(_env_file=None, **aws_values())  # type: ignore[arg-type]
    assert s.profile == "aws"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"db": {"url": None}}, "PostgreSQL URL"),
        ({"db": {"url": "postgresql+psycopg://q@db/q"}}, "sslmode=require"),
        ({"cache": {"redis_url": None}}, "REDIS_URL"),
        ({"vectors": {"milvus_uri": None}}, "MILVUS_URI"),
        ({"models": {"provider": "local"}}, "gpu_endpoint"),
        ({"saga_runner": "local"}, "stepfunctions"),
        ({"event_bus": "local"}, "eventbridge"),
        ({"blob_store": "local"}, "DOCUMENTS_BUCKET"),
        ({"auth": {"jwt_secret": DEFAULT_JWT_SECRET}}, "JWT_SECRET must not be the development"),
        ({"auth": {"jwt_secret": "x" * 48}}, "API_KEY_PEPPER must not be the development"),
    ],
)
def test_aws_profile_refuses_local_adapters_and_default_secrets(
    override: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Settings(_env_file=None, **aws_values(**override))  # type: ignore[arg-type]


def test_asymmetric_signing_needs_a_private_key_and_kms_needs_a_key_id() -> None:
    with pytest.raises(ValidationError, match="needs jwt_private_key"):
        Settings(_env_file=None, auth={"jwt_algorithm": "ES256"})  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match=r"needs auth\.kms_key_id"):
        Settings(_env_file=None, auth={"secrets_cipher": "kms"})  # type: ignore[call-arg]


def test_short_jwt_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(_env_file=None, auth={"jwt_secret": "short"})  # type: ignore[call-arg]


def test_configuration_reference_is_current() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render_reference(), "run `quarry config docs` to regenerate"


def test_reference_lists_every_nested_variable() -> None:
    text = render_reference()
    for variable in ("QUARRY_PROFILE", "QUARRY_DB__POOL_SIZE", "QUARRY_CACHE__REDIS_URL"):
        assert f"`{variable}`" in text
