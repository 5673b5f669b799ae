from __future__ import annotations

import json
import logging

import pytest

from shared.observability.logging import (
    RequestIdFilter,
    request_id_var,
    slow_operation_log,
)

pytestmark = pytest.mark.unit


def test_request_id_filter_adds_the_current_request_id() -> None:
    token = request_id_var.set("req-123")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
        assert RequestIdFilter().filter(record)
        assert record.request_id == "req-123"
    finally:
        request_id_var.reset(token)


def test_slow_operation_log_warns_only_above_threshold(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("quarry.test")
    with caplog.at_level(logging.WARNING, logger="quarry.test"):
        with slow_operation_log(logger, "fast op", threshold_ms=10_000):
            pass
        with slow_operation_log(logger, "slow op", threshold_ms=0.0, kb="k1"):
            sum(range(1000))
    messages = [r.getMessage() for r in caplog.records]
    assert not any("fast op" in m for m in messages)
    slow = [r for r in caplog.records if "slow op" in r.getMessage()]
    assert slow
    assert slow[0].kb == "k1"  # type: ignore[attr-defined]


def test_powertools_formatter_emits_json_with_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(LambdaPowertoolsFormatter(service="t"))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("quarry.json")
    logger.addHandler(handler)
    logger.propagate = False
    token = request_id_var.set("abc")
    try:
        logger.warning("hi")
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "hi"
    assert line["request_id"] == "abc"
