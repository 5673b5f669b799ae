"""The metrics facade: domain code counts and times through ``MetricsSink``.

``PrometheusMetrics`` keeps figures in memory for the local server's ``GET /metrics`` (latency
quantiles come from a bounded window of recent samples per series); ``EmfMetrics`` writes
CloudWatch Embedded Metric Format through Powertools in Lambda.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Dimensions = tuple[tuple[str, str], ...]
QUANTILES = (0.5, 0.95, 0.99)


class MetricsSink(Protocol):
    def increment(self, name: str, value: float = 1.0, **dimensions: str) -> None: ...

    def observe_ms(self, name: str, value_ms: float, **dimensions: str) -> None: ...

    def set_gauge(self, name: str, value: float, **dimensions: str) -> None: ...


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an already sorted, non-empty list."""
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class PrometheusMetrics(Collector):
    def __init__(self, window: int = 2048, prefix: str = "quarry") -> None:
        self._window = window
        self._prefix = prefix
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Dimensions, float]] = {}
        self._gauges: dict[str, dict[Dimensions, float]] = {}
        self._samples: dict[str, dict[Dimensions, deque[float]]] = {}
        self._totals: dict[str, dict[Dimensions, tuple[int, float]]] = {}
        self._gauge_callbacks: list[Callable[[], Iterable[tuple[str, float, Dimensions]]]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def increment(self, name: str, value: float = 1.0, **dimensions: str) -> None:
        key = _dims(dimensions)
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + value

    def observe_ms(self, name: str, value_ms: float, **dimensions: str) -> None:
        key = _dims(dimensions)
        with self._lock:
            self._samples.setdefault(name, {}).setdefault(key, deque(maxlen=self._window)).append(
                value_ms
            )
            totals = self._totals.setdefault(name, {})
            count, total = totals.get(key, (0, 0.0))
            totals[key] = (count + 1, total + value_ms)

    def set_gauge(self, name: str, value: float, **dimensions: str) -> None:
        with self._lock:
            self._gauges.setdefault(name, {})[_dims(dimensions)] = value

    def add_gauge_callback(
        self, callback: Callable[[], Iterable[tuple[str, float, Dimensions]]]
    ) -> None:
        """Gauges read at scrape time (e.g. database pool usage)."""
        self._gauge_callbacks.append(callback)

    def counter_value(self, name: str, **dimensions: str) -> float:
        with self._lock:
            return self._counters.get(name, {}).get(_dims(dimensions), 0.0)

    def quantiles_ms(self, name: str, **dimensions: str) -> dict[float, float]:
        with self._lock:
            samples = sorted(self._samples.get(name, {}).get(_dims(dimensions), ()))
        return {q: quantile(samples, q) for q in QUANTILES} if samples else {}

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counters = {n: dict(s) for n, s in self._counters.items()}
            gauges = {n: dict(s) for n, s in self._gauges.items()}
            samples = {n: {k: sorted(v) for k, v in s.items()} for n, s in self._samples.items()}
            totals = {n: dict(s) for n, s in self._totals.items()}
        for callback in self._gauge_callbacks:
            for name, value, key in callback():
                gauges.setdefault(name, {})[key] = value
        for name, counter_series in counters.items():
            yield from _families(f"{self._prefix}_{name}", "counter", counter_series)
        for name, gauge_series in gauges.items():
            yield from _families(f"{self._prefix}_{name}", "gauge", gauge_series)
        for name, sample_series in samples.items():
            yield from self._summary(name, sample_series, totals[name])

    def _summary(
        self,
        name: str,
        series: dict[Dimensions, list[float]],
        totals: dict[Dimensions, tuple[int, float]],
    ) -> Iterator[Metric]:
        base = f"{self._prefix}_{name}_ms"
        labels = sorted({k for key in series for k, _ in key})
        quantiles = GaugeMetricFamily(
            base, f"{name} (ms), recent window", labels=[*labels, "quantile"]
        )
        counts = GaugeMetricFamily(f"{base}_count", f"{name} observations", labels=labels)
        sums = GaugeMetricFamily(f"{base}_sum", f"{name} total (ms)", labels=labels)
        for key, values in series.items():
            label_values = [dict(key).get(label, "") for label in labels]
            for q in QUANTILES:
                quantiles.add_metric([*label_values, str(q)], quantile(values, q))
            count, total = totals[key]
            counts.add_metric(label_values, count)
            sums.add_metric(label_values, total)
        yield from (quantiles, counts, sums)


class EmfMetrics:
    """CloudWatch EMF through Powertools; one EMF document per data point, flushed at once."""

    def __init__(self, namespace: str, service: str) -> None:
        self._namespace = namespace
        self._service = service

    def _emit(self, name: str, unit: str, value: float, dimensions: dict[str, str]) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        with single_metric(
            name=name, unit=MetricUnit(unit), value=value, namespace=self._namespace
        ) as metric:
            metric.add_dimension(name="service", value=self._service)
            for key, dim_value in dimensions.items():
                metric.add_dimension(name=key, value=dim_value)

    def increment(self, name: str, value: float = 1.0, **dimensions: str) -> None:
        self._emit(name, "Count", value, dimensions)

    def observe_ms(self, name: str, value_ms: float, **dimensions: str) -> None:
        self._emit(name, "Milliseconds", value_ms, dimensions)

    def set_gauge(self, name: str, value: float, **dimensions: str) -> None:
        self._emit(name, "None", value, dimensions)


def _dims(dimensions: dict[str, str]) -> Dimensions:
    return tuple(sorted((k, str(v)) for k, v in dimensions.items()))


def _families(name: str, kind: str, series: dict[Dimensions, float]) -> Iterator[Metric]:
    labels = sorted({k for key in series for k, _ in key})
    family: Metric
    if kind == "counter":
        family = CounterMetricFamily(name, name, labels=labels)
    else:
        family = GaugeMetricFamily(name, name, labels=labels)
    for key, value in series.items():
        family.add_metric([dict(key).get(label, "") for label in labels], value)
    yield family
