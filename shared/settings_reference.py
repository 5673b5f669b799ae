"""Generates ``docs/configuration.md`` from the settings model (a test keeps it current)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from shared.settings import Settings

ENV_PREFIX = "QUARRY_"
HEADER = """# Configuration reference

Generated from `shared/settings.py` by `quarry config docs`; do not edit by hand.
Every setting is an environment variable (or a line in `.env`). Nested groups use `__`.
The `local` profile's defaults need no setup; the `aws` profile refuses to start with an
embedded adapter or a default secret.

| variable | type | default | description |
| --- | --- | --- | --- |
"""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(development default)" if value.get_secret_value() else "(empty)"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    if value is None:
        return "unset"
    return f"`{value}`"


def _type_name(field: FieldInfo) -> str:
    text = str(field.annotation).replace("typing.", "").replace("pathlib.", "")
    text = text.replace("pydantic.types.", "").replace("<class '", "").replace("'>", "")
    return text.replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation, f"{prefix}{name.upper()}__")
            continue
        description = (field.description or "").replace("|", "\\|")
        env = f"{prefix}{name.upper()}"
        yield f"| `{env}` | {_type_name(field)} | {_default(field)} | {description} |"


def render_reference() -> str:
    return HEADER + "\n".join(_rows(Settings, ENV_PREFIX)) + "\n"
