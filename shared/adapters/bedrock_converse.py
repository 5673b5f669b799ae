"""Calls to the Amazon Bedrock Converse API, shared by answer generation and workflow agents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import DependencyUnavailable


def converse(client: Any, **request: Any) -> dict[str, Any]:
    """One Converse call on a ``bedrock-runtime`` client; SDK errors become ``llm_unavailable``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response: dict[str, Any] = client.converse(**request)
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailable(
            f"Bedrock did not answer: {exc}", code="llm_unavailable"
        ) from exc
    return response


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a Converse message: its text blocks joined, other blocks skipped."""
    return "".join(block.get("text", "") for block in message["content"]).strip()
