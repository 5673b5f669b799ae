"""FastAPI dependencies shared by every domain app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Request

from shared.auth.authenticator import principal_from_context
from shared.auth.rate_limit import RateLimit, check
from shared.auth.rbac import Permission, Principal, require
from shared.container import Container
from shared.db.engine import tenant_scope
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


RateLimitName = Literal["default", "query"]


async def client_ip(request: Request) -> str | None:
    """The caller's address: API Gateway's view in Lambda, the socket's locally."""
    event = request.scope.get("aws.event")
    if event is not None:
        source = ((event.get("requestContext") or {}).get("http") or {}).get("sourceIp")
        return str(source) if source else None
    return request.client.host if request.client else None


async def authenticate(request: Request, container: Container) -> Principal:
    """The caller. In Lambda, only the authorizer's context counts (API Gateway ran the Lambda
    authorizer before the function); elsewhere the same credential check runs here."""
    event = request.scope.get("aws.event")
    if event is not None:
        authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
        return principal_from_context(authorizer.get("lambda") or {})
    return await container.auth.authenticator.authenticate(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )


def authorize(
    permission: Permission | None, *, limit: RateLimitName = "default"
) -> Callable[[Request, Container], Awaitable[Principal]]:
    """A dependency: the authenticated principal holding ``permission`` (else 401/403), counted
    against its per-route rate limit (else 429 with Retry-After). It also scopes the request's
    database work to the principal's tenant (``tenant_scope``)."""

    async def dependency(request: Request, container: ContainerDep) -> Principal:
        principal = await authenticate(request, container)
        tenant_scope.set(principal.tenant_id)
        auth = container.settings.auth
        rule = RateLimit(
            auth.query_rate_limit if limit == "query" else auth.default_rate_limit,
            auth.rate_limit_window_s,
        )
        route = getattr(request.scope.get("route"), "path", request.url.path)
        await check(
            container.auth.rate_limiter, principal=principal.subject, route=route, rule=rule
        )
        if permission is not None:
            require(principal, permission)
        return principal

    return dependency


ClientIpDep = Annotated[str | None, Depends(client_ip)]
# Any authenticated caller, whatever its permissions (e.g. ``GET /v1/auth/me``).
PrincipalDep = Annotated[Principal, Depends(authorize(None))]
# Routes on one KB check the KB-specific permission themselves (``KbService.get_for``): a
# restricted KB's grant may stand in for the role (``shared.kb.access``).
KbCaller = PrincipalDep
KbQueryCaller = Annotated[Principal, Depends(authorize(None, limit="query"))]
KbReader = Annotated[Principal, Depends(authorize(Permission.KB_READ))]
KbManager = Annotated[Principal, Depends(authorize(Permission.KB_MANAGE))]
UserManager = Annotated[Principal, Depends(authorize(Permission.USERS_MANAGE))]
ApiKeyManager = Annotated[Principal, Depends(authorize(Permission.API_KEYS_MANAGE))]
SecretManager = Annotated[Principal, Depends(authorize(Permission.SECRETS_MANAGE))]
AuditReader = Annotated[Principal, Depends(authorize(Permission.AUDIT_READ))]
TenantManager = Annotated[Principal, Depends(authorize(Permission.TENANT_MANAGE))]
WorkflowReader = Annotated[Principal, Depends(authorize(Permission.WORKFLOWS_READ))]
WorkflowRunner = Annotated[Principal, Depends(authorize(Permission.WORKFLOWS_RUN))]
WorkflowManager = Annotated[Principal, Depends(authorize(Permission.WORKFLOWS_MANAGE))]
