from __future__ import annotations

import threading

import pytest

from shared.adapters.circuit_breaker import (
    CIRCUIT_OPEN_METRIC,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)
from shared.errors import DependencyUnavailable
from shared.observability.metrics import PrometheusMetrics

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("gpu", failure_threshold=3, reset_timeout_s=10.0, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.allow()
        breaker.record_failure()


def test_it_starts_closed_and_lets_calls_through(breaker: CircuitBreaker) -> None:
    assert breaker.state is BreakerState.CLOSED
    breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_consecutive_failures_open_it(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN


def test_a_success_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.allow()
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED


def test_open_rejects_at_once_with_circuit_open_and_the_wait(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 4
    with pytest.raises(CircuitOpenError) as caught:
        breaker.allow()
    error = caught.value
    assert isinstance(error, DependencyUnavailable)  # callers that only know the base class
    assert error.code == "circuit_open"
    assert error.status_code == 503
    assert error.retry_after_s == pytest.approx(6.0)
    assert error.details == {"endpoint": "gpu", "retry_after_s": 6.0}


def test_after_the_timeout_it_half_opens_for_one_trial(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.allow()  # the trial
    with pytest.raises(CircuitOpenError):
        breaker.allow()  # others wait for the trial's outcome


def test_a_successful_trial_closes_it(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 10
    breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    fail(breaker, 2)  # the count starts again from zero
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_trial_opens_it_again_for_a_full_timeout(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 10
    breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 9.9
    with pytest.raises(CircuitOpenError):
        breaker.allow()
    clock.now += 0.1
    breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_several_trials_when_configured(clock: FakeClock) -> None:
    breaker = CircuitBreaker(
        "gpu", failure_threshold=1, reset_timeout_s=1, half_open_max_calls=2, clock=clock
    )
    fail(breaker, 1)
    clock.now += 1
    breaker.allow()
    breaker.allow()
    with pytest.raises(CircuitOpenError):
        breaker.allow()


def test_late_outcomes_of_calls_let_through_before_it_opened_are_ignored(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    breaker.allow()  # a slow call starts while closed
    fail(breaker, 3)
    opened_at = clock.now
    clock.now += 5
    breaker.record_success()  # ...and answers after the breaker opened
    assert breaker.state is BreakerState.OPEN
    breaker.record_failure()
    clock.now = opened_at + 10  # the pause was not restarted by the late failure
    assert breaker.state is BreakerState.HALF_OPEN


def test_failures_from_many_threads_are_all_counted() -> None:
    breaker = CircuitBreaker("gpu", failure_threshold=50, reset_timeout_s=60)  # 5 x 10 = 50
    threads = [threading.Thread(target=fail, args=(breaker, 10)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"reset_timeout_s": 0}, {"half_open_max_calls": 0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        CircuitBreaker("gpu", **kwargs)  # type: ignore[arg-type]


def test_each_opening_counts_one_circuit_open_by_endpoint(clock: FakeClock) -> None:
    metrics = PrometheusMetrics()
    breaker = CircuitBreaker(
        "gpu_endpoint", failure_threshold=2, reset_timeout_s=10.0, clock=clock, metrics=metrics
    )
    fail(breaker, 1)
    assert metrics.counter_value(CIRCUIT_OPEN_METRIC, endpoint="gpu_endpoint") == 0
    fail(breaker, 1)
    breaker.record_failure()  # a late outcome while open: no second trip
    assert metrics.counter_value(CIRCUIT_OPEN_METRIC, endpoint="gpu_endpoint") == 1
    clock.now += 10.0
    fail(breaker, 1)  # the half-open trial fails: it opens again
    assert metrics.counter_value(CIRCUIT_OPEN_METRIC, endpoint="gpu_endpoint") == 2
