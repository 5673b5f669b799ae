"""FastAPI dependencies shared by every domain app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.container import Container
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
