"""The HTTP API: one route table mapping path prefixes to domain functions, a Lambda authorizer
(the auth function, simple responses) on every route except health, login, register and
refresh, JSON access logs and stage throttling.

The authorizer answers ``{"isAuthorized": bool, "context": {"tenant_id": ...}}``; the domain apps
read the tenant from ``requestContext.authorizer.lambda.tenant_id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import jsii
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_logs as logs
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.functions import Functions
from quarry_infra.nag import suppress

ANY, GET, POST = apigwv2.HttpMethod.ANY, apigwv2.HttpMethod.GET, apigwv2.HttpMethod.POST
AUTHORIZER_CACHE = Duration.minutes(5)
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
}


@dataclass(frozen=True)
class Route:
    domain: str
    path: str
    method: apigwv2.HttpMethod = ANY
    public: bool = False


ROUTES: tuple[Route, ...] = (
    # auth: sign-in is public, the rest needs a token
    Route("auth", "/v1/auth/login", POST, public=True),
    Route("auth", "/v1/auth/register", POST, public=True),
    Route("auth", "/v1/auth/refresh", POST, public=True),
    Route("auth", "/v1/auth/{proxy+}"),
    Route("auth", "/v1/api-keys"),
    Route("auth", "/v1/api-keys/{proxy+}"),
    # kb_admin: knowledge bases, documents, runs, stats
    Route("kb_admin", "/v1/kbs"),
    Route("kb_admin", "/v1/kbs/{kb}"),
    Route("kb_admin", "/v1/kbs/{kb}/stats"),
    Route("kb_admin", "/v1/kbs/{kb}/documents"),
    Route("kb_admin", "/v1/kbs/{kb}/documents/{proxy+}"),
    Route("kb_admin", "/v1/kbs/{kb}/runs/{proxy+}"),
    # query
    Route("query", "/v1/kbs/{kb}/query"),
    Route("query", "/v1/stats/queries"),
    Route("query", "/v1/stats/cache"),
    # workflows, tuning
    Route("workflows", "/v1/workflows"),
    Route("workflows", "/v1/workflows/{proxy+}"),
    Route("tuning", "/v1/tuning/{proxy+}"),
    # liveness of every domain, public (GET beats the ANY {proxy+} routes above)
    *(
        Route(domain, f"/v1/{domain.replace('_', '-')}/health", GET, public=True)
        for domain in ("query", "workflows", "kb_admin", "auth", "ingestion", "tuning")
    ),
)


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)
        self._format = apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT))

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


class Api(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, functions: Functions
    ) -> None:
        super().__init__(scope, construct_id)
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{config.prefix}-api",
            description="Quarry HTTP API",
            create_default_stage=False,
        )
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            access_log_settings=_AccessLogSettings(access_logs),
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api_rate_per_s, burst_limit=config.api_burst
            ),
        )
        authorizer = authorizers.HttpLambdaAuthorizer(
            "Authorizer",
            functions.by_domain["auth"],
            authorizer_name=f"{config.prefix}-authorizer",
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            identity_source=["$request.header.Authorization"],
            results_cache_ttl=AUTHORIZER_CACHE,
        )
        integrations_by_domain = {
            domain: integrations.HttpLambdaIntegration(
                f"{function.node.id}Integration",
                function,
                payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            )
            for domain, function in functions.by_domain.items()
        }
        for route in ROUTES:
            created = self.http_api.add_routes(
                path=route.path,
                methods=[route.method],
                integration=integrations_by_domain[route.domain],
                authorizer=apigwv2.HttpNoneAuthorizer() if route.public else authorizer,
            )
            if route.public:
                for http_route in created:
                    suppress(
                        http_route,
                        "AwsSolutions-APIG4",
                        "Public on purpose: liveness checks and sign-in (login, register, "
                        "refresh) come before a caller has a token.",
                    )

    @property
    def url(self) -> str:
        return self.http_api.api_endpoint
