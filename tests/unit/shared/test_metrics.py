from __future__ import annotations

import json

import pytest

from shared.observability.metrics import EmfMetrics, PrometheusMetrics, quantile

pytestmark = pytest.mark.unit


def test_quantiles_come_from_the_recent_window() -> None:
    metrics = PrometheusMetrics(window=100)
    for value in range(1, 201):  # only the last 100 (101..200) stay in the window
        metrics.observe_ms("latency", float(value), route="/q")
    q = metrics.quantiles_ms("latency", route="/q")
    assert q[0.5] == pytest.approx(150, abs=1)
    assert q[0.95] == pytest.approx(195, abs=1)
    assert q[0.99] == pytest.approx(199, abs=1)


def test_prometheus_text_has_counters_gauges_quantiles_and_callbacks() -> None:
    metrics = PrometheusMetrics()
    metrics.increment("http_requests", route="/a", status="200")
    metrics.increment("http_requests", 2, route="/a", status="200")
    metrics.set_gauge("cache_hit_rate", 0.5, level="l1")
    metrics.observe_ms("http_request_latency", 12.0, route="/a")
    metrics.add_gauge_callback(lambda: [("db_pool_checked_out", 3.0, ())])
    text = metrics.render().decode()
    assert 'quarry_http_requests_total{route="/a",status="200"} 3.0' in text
    assert 'quarry_cache_hit_rate{level="l1"} 0.5' in text
    assert 'quarry_http_request_latency_ms{quantile="0.95",route="/a"} 12.0' in text
    assert 'quarry_http_request_latency_ms_count{route="/a"} 1.0' in text
    assert "quarry_db_pool_checked_out 3.0" in text
    assert metrics.counter_value("http_requests", route="/a", status="200") == 3


def test_quantile_nearest_rank() -> None:
    assert quantile([1.0], 0.99) == 1.0
    assert quantile([1.0, 2.0, 3.0], 0.5) == 2.0


def test_emf_metrics_write_embedded_metric_format(capsys: pytest.CaptureFixture[str]) -> None:
    EmfMetrics("QuarryTest", "query").observe_ms("query_latency", 42.0, mode="fast")
    blob = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    directive = blob["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "QuarryTest"
    assert blob["query_latency"] == [42.0] or blob["query_latency"] == 42.0
    assert blob["mode"] == "fast"
    assert blob["service"] == "query"
