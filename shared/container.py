"""The composition root: the one place that builds adapters from settings.

Everything is created lazily on first use, so a cold start pays only for what the request needs,
and ``aclose`` releases whatever was created.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

from shared.adapters.local_models import probe_local_models
from shared.db.engine import Database, PoolConfig
from shared.health import HealthCheck
from shared.observability.metrics import Dimensions, MetricsSink, PrometheusMetrics
from shared.settings import Settings, running_in_lambda

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from shared.adapters.gpu_endpoint_client import GpuEndpointClient
    from shared.adapters.milvus_vector_store import MilvusVectorStore

log = logging.getLogger(__name__)


class Container:
    def __init__(self, settings: Settings, *, metrics: MetricsSink | None = None) -> None:
        self.settings = settings
        self.metrics: MetricsSink = metrics or PrometheusMetrics(
            window=settings.observability.metrics_window
        )
        self._created: set[str] = set()

    @cached_property
    def database(self) -> Database:
        db = self.settings.db
        in_lambda = running_in_lambda()
        pool = PoolConfig(
            size=db.lambda_pool_size if in_lambda else db.pool_size,
            max_overflow=db.lambda_max_overflow if in_lambda else db.max_overflow,
            recycle_s=db.pool_recycle_s,
            timeout_s=db.pool_timeout_s,
            pre_ping=db.pool_pre_ping,
            warn_utilization=db.pool_warn_utilization,
        )
        database = Database(self.settings.database_url, pool, echo=db.echo)
        if isinstance(self.metrics, PrometheusMetrics):
            self.metrics.add_gauge_callback(lambda: _pool_gauges(database))
        self._created.add("database")
        return database

    @cached_property
    def redis(self) -> Redis | None:
        if not self.settings.cache.redis_url:
            return None
        from shared.adapters.redis_client import create_redis

        self._created.add("redis")
        return create_redis(self.settings.cache.redis_url)

    @cached_property
    def vector_store(self) -> MilvusVectorStore:
        from shared.adapters.milvus_vector_store import MilvusVectorStore

        vectors = self.settings.vectors
        if self.settings.milvus_uri.endswith(".db"):
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._created.add("vector_store")
        return MilvusVectorStore(
            self.settings.milvus_uri,
            token=vectors.milvus_token.get_secret_value() if vectors.milvus_token else None,
            collection_prefix=vectors.collection_prefix,
        )

    @cached_property
    def gpu_endpoint(self) -> GpuEndpointClient | None:
        url = self.settings.models.gpu_endpoint_url
        if self.settings.models.provider != "gpu_endpoint" or not url:
            return None
        from shared.adapters.gpu_endpoint_client import GpuEndpointClient

        self._created.add("gpu_endpoint")
        return GpuEndpointClient(url)

    def health_checks(self) -> list[HealthCheck]:
        checks = [
            HealthCheck("database", self.database.ping),
            HealthCheck("vector_store", self.vector_store.ping),
        ]
        if self.redis is not None:
            from shared.adapters.redis_client import ping_redis

            redis = self.redis
            checks.append(HealthCheck("redis", lambda: ping_redis(redis), required=False))
        if self.gpu_endpoint is not None:
            checks.append(HealthCheck("models", self.gpu_endpoint.health))
        else:
            checks.append(HealthCheck("models", probe_local_models))
        return checks

    async def aclose(self) -> None:
        """Close what was created, newest first; one failure does not stop the rest."""
        for name in ("gpu_endpoint", "vector_store", "redis", "database"):
            if name not in self._created:
                continue
            try:
                if name == "database":
                    await self.database.aclose()
                elif name == "redis" and self.redis is not None:
                    await self.redis.aclose()
                elif name == "vector_store":
                    self.vector_store.close()
                elif name == "gpu_endpoint" and self.gpu_endpoint is not None:
                    await self.gpu_endpoint.aclose()
            except Exception:
                log.exception("closing %s failed", name)
        self._created.clear()


def _pool_gauges(database: Database) -> list[tuple[str, float, Dimensions]]:
    usage = database.pool_usage()
    if usage is None:
        return []
    return [
        ("db_pool_checked_out", usage.checked_out, ()),
        ("db_pool_overflow", usage.overflow, ()),
        ("db_pool_capacity", usage.capacity, ()),
        ("db_pool_utilization", usage.utilization, ()),
        ("db_pool_wait_ms_max", usage.wait_ms_max, ()),
        ("db_pool_waits", usage.waits, ()),
    ]
