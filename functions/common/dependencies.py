"""FastAPI dependencies shared by every domain app."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from shared.container import Container
from shared.errors import Unauthorized
from shared.kb.service import LOCAL_TENANT
from shared.observability.metrics import MetricsSink
from shared.settings import Settings


class ContainerProvider:
    """Builds the container on first use and keeps it for the life of the process.

    In Lambda that means once per execution environment (reused by warm invocations).
    """

    def __init__(self, settings: Settings, metrics: MetricsSink) -> None:
        self.settings = settings
        self.metrics = metrics
        self._container: Container | None = None

    def get(self) -> Container:
        if self._container is None:
            self._container = Container(self.settings, metrics=self.metrics)
        return self._container

    async def aclose(self) -> None:
        if self._container is not None:
            await self._container.aclose()
            self._container = None


def get_container(request: Request) -> Container:
    provider: ContainerProvider = request.app.state.container_provider
    return provider.get()


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_tenant_id(request: Request, container: ContainerDep) -> uuid.UUID:
    """The caller's tenant. In the cloud it comes only from the Lambda authorizer's context
    (API Gateway has already validated the token); the local server has one tenant."""
    event = request.scope.get("aws.event")
    if event is not None or container.settings.profile == "aws":
        authorizer = ((event or {}).get("requestContext") or {}).get("authorizer") or {}
        tenant = (authorizer.get("lambda") or {}).get("tenant_id")
        if not tenant:
            raise Unauthorized("no authenticated tenant in the request", code="unauthenticated")
        try:
            return uuid.UUID(str(tenant))
        except ValueError as exc:
            raise Unauthorized("the tenant in the request is not valid") from exc
    return await container.kb_repository.ensure_tenant(LOCAL_TENANT)


TenantDep = Annotated[uuid.UUID, Depends(get_tenant_id)]
