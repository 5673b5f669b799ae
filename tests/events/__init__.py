"""Real-shaped AWS events, loaded by name, and a Lambda context for invoking handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return data


@dataclass
class FakeLambdaContext:
    function_name: str = "quarry-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:quarry-test"
    aws_request_id: str = "6f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8"
    log_group_name: str = "/aws/lambda/quarry-test"
    log_stream_name: str = "2026/11/24/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
