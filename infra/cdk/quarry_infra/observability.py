"""The CloudWatch dashboard and alarms.

Custom metrics come from the functions as EMF in namespace ``Quarry`` with a ``service``
dimension (the domain): ``query_latency`` (ms; ``mode``, ``cache``), ``cache_hit_rate`` (0..1;
``mode``) and ``circuit_open`` (count of breaker trips; ``endpoint``: the breaker's name, as
``shared.adapters.circuit_breaker`` counts them). Alarms notify an SNS topic (and
``alarm_email`` when set).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from quarry_infra.api import Api
from quarry_infra.config import StageConfig
from quarry_infra.functions import METRICS_NAMESPACE, Functions
from shared.adapters.circuit_breaker import CIRCUIT_OPEN_METRIC
from shared.adapters.gpu_endpoint_transport import GPU_ENDPOINT_BREAKER
from shared.domains import DOMAIN_CAPABILITIES
from shared.settings import QuerySettings

NAMESPACE = METRICS_NAMESPACE  # what the functions emit EMF under
PERIOD = Duration.minutes(5)
CACHE_PERIOD = Duration.minutes(15)
MODES = ("fast", "balanced", "deep")
API_5XX_PERCENT = 5.0
CACHE_HIT_RATE_MIN = 0.6
# The GPU endpoint's callers: the domains whose breaker can trip.
BREAKER_SERVICES = tuple(d for d, needs in DOMAIN_CAPABILITIES.items() if "models" in needs)
GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
GTE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
NOT_BREACHING = cloudwatch.TreatMissingData.NOT_BREACHING


def budgets_ms() -> dict[str, int]:
    """The p95 thresholds: each mode's time budget (the settings' defaults)."""
    query = QuerySettings()
    return {
        "fast": query.fast_budget_ms,
        "balanced": query.balanced_budget_ms,
        "deep": query.deep_budget_ms,
    }


def _metric(name: str, statistic: str, period: Duration, **dimensions: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=period,
    )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        api: Api,
        functions: Functions,
        state_machine: sfn.StateMachine,
        queues: Mapping[str, sqs.IQueue],
    ) -> None:
        super().__init__(scope, construct_id)
        self._prefix = config.prefix
        self.topic = self._topic(config)
        self.alarms: list[cloudwatch.Alarm] = []
        latency, hit_rate = self._query_alarms()
        error_rate = self._api_alarm(api)
        trips = self._breaker_alarm()
        depth = {name: self._queue_alarm(name, queue) for name, queue in queues.items()}
        failed_runs = state_machine.metric_failed(period=PERIOD, statistic="Sum")
        self._alarm(
            "ingestion-failed",
            failed_runs,
            1,
            GTE,
            periods=1,
            description="ingestion saga executions failed (compensated)",
        )
        self._dashboard(config, latency, error_rate, hit_rate, trips, depth, functions, failed_runs)

    def _query_alarms(self) -> tuple[dict[str, cloudwatch.Metric], dict[str, cloudwatch.Metric]]:
        """p95 of uncached queries over the mode's budget; cache hit rate under 60 %."""
        latency = {
            m: _metric("query_latency", "p95", PERIOD, service="query", mode=m, cache="miss")
            for m in MODES
        }
        for mode, budget in budgets_ms().items():
            self._alarm(
                f"query-p95-{mode}",
                latency[mode],
                budget,
                GT,
                periods=3,
                description=f"p95 of uncached {mode.upper()} queries over its {budget} ms budget",
            )
        hit_rate = {
            m: _metric("cache_hit_rate", "Average", CACHE_PERIOD, service="query", mode=m)
            for m in MODES
        }
        for mode, metric in hit_rate.items():
            self._alarm(
                f"cache-hit-rate-{mode}",
                metric,
                CACHE_HIT_RATE_MIN,
                LT,
                periods=2,
                description=f"{mode.upper()} cache hit rate under {CACHE_HIT_RATE_MIN:.0%}",
            )
        return latency, hit_rate

    def _api_alarm(self, api: Api) -> cloudwatch.MathExpression:
        requests = api.http_api.metric_count(period=PERIOD, statistic="Sum")
        errors = api.http_api.metric_server_error(period=PERIOD, statistic="Sum")
        error_rate = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={"requests": requests, "errors": errors},
            label="5xx %",
            period=PERIOD,
        )
        self._alarm(
            "api-5xx-rate",
            error_rate,
            API_5XX_PERCENT,
            GT,
            periods=2,
            description=f"more than {API_5XX_PERCENT} % of API requests answered 5xx",
        )
        return error_rate

    def _breaker_alarm(self) -> cloudwatch.MathExpression:
        trips = cloudwatch.MathExpression(
            expression=" + ".join(f"FILL({s}, 0)" for s in BREAKER_SERVICES),
            using_metrics={
                s: _metric(
                    CIRCUIT_OPEN_METRIC, "Sum", PERIOD, service=s, endpoint=GPU_ENDPOINT_BREAKER
                )
                for s in BREAKER_SERVICES
            },
            label="circuit breaker trips",
            period=PERIOD,
        )
        self._alarm(
            "circuit-open",
            trips,
            1,
            GTE,
            periods=1,
            description="the GPU endpoint's circuit breaker opened (queries degrade)",
        )
        return trips

    def _queue_alarm(self, name: str, queue: sqs.IQueue) -> cloudwatch.Metric:
        depth = queue.metric_approximate_number_of_messages_visible(
            period=PERIOD, statistic="Maximum"
        )
        self._alarm(
            f"dlq-{name}", depth, 1, GTE, periods=1, description=f"messages in the {name} DLQ"
        )
        return depth

    def _topic(self, config: StageConfig) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmsKey",
            description="Quarry alarm topic",
            enable_key_rotation=True,
            removal_policy=config.removal_policy,
        )
        # CloudWatch publishes to the encrypted topic: it must be able to use the key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy "*" means this key
            )
        )
        topic = sns.Topic(
            self, "Alarms", topic_name=f"{config.prefix}-alarms", master_key=key, enforce_ssl=True
        )
        if config.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        return topic

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        *,
        periods: int,
        description: str,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            f"Alarm-{name}",
            alarm_name=f"{self._prefix}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=periods,
            treat_missing_data=NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _dashboard(
        self,
        config: StageConfig,
        latency: Mapping[str, cloudwatch.IMetric],
        error_rate: cloudwatch.IMetric,
        hit_rate: Mapping[str, cloudwatch.IMetric],
        trips: cloudwatch.IMetric,
        depth: Mapping[str, cloudwatch.IMetric],
        functions: Functions,
        failed_runs: cloudwatch.IMetric,
    ) -> None:
        def graph(
            title: str, metrics: list[cloudwatch.IMetric], width: int = 8
        ) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=metrics, width=width)

        by_function = functions.by_domain.values()
        cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{config.prefix}-overview",
            widgets=[
                [
                    graph("Query p95 latency by mode (ms, uncached)", list(latency.values())),
                    graph("API 5xx rate (%)", [error_rate]),
                    graph("Cache hit rate by mode", list(hit_rate.values())),
                ],
                [
                    graph("Circuit breaker trips", [trips]),
                    graph("Dead-letter queue depth", list(depth.values())),
                    graph("Failed ingestion runs", [failed_runs]),
                ],
                [
                    graph(
                        "Function errors", [f.metric_errors(period=PERIOD) for f in by_function], 12
                    ),
                    graph(
                        "Function p95 duration",
                        [f.metric_duration(period=PERIOD, statistic="p95") for f in by_function],
                        12,
                    ),
                ],
            ],
        )
