"""Stateful data services and their secrets: Aurora PostgreSQL Serverless v2 behind RDS Proxy,
ElastiCache Serverless (Valkey or Redis OSS, TLS and a password user), the Secrets Manager
secrets the functions resolve at cold start (database, cache, Milvus, JWT signing key, API key
pepper; see ``shared.adapters.aws_secrets_source``), and the KMS key of tenants' provider
secrets.

Secrets never appear in the template: functions get secret ARNs, the ElastiCache user gets its
password through a CloudFormation dynamic reference.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.nag import suppress
from quarry_infra.network import Network

DB_NAME = "quarry"
DB_USER = "quarry"
DB_PORT = 5432
CACHE_USER = "quarry"
CACHE_PORTS = ec2.Port.tcp_range(6379, 6380)  # 6379 primary, 6380 reader endpoint
ENGINE_MAJOR = {"valkey": "8", "redis": "7"}
ROTATION_REASON = (
    "Rotation is not wired yet: it needs the Secrets Manager rotation application (a SAM "
    "transform) and functions that re-read the secret on an authentication failure. Rotate "
    "by hand (put-secret-value) until then; functions read the secret at cold start."
)
PEPPER_ROTATION_REASON = (
    "The pepper is part of every stored API key hash: a new pepper would invalidate every API "
    "key, so it is generated once and never rotated."
)


class Data(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, network: Network
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._network = network
        self._database()
        self._cache()
        self.milvus_secret = secretsmanager.Secret(
            self,
            "MilvusSecret",
            secret_name=f"{config.prefix}/milvus",
            description="Milvus / Zilliz connection: {uri, token}. Set the real values after "
            "the first deploy (aws secretsmanager put-secret-value).",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"uri": config.milvus_uri}),
                generate_string_key="token",
                exclude_punctuation=True,
            ),
            removal_policy=config.removal_policy,
        )
        # Secrets Manager generates one value per secret, hence two secrets.
        self.jwt_secret = secretsmanager.Secret(
            self,
            "JwtSecret",
            secret_name=f"{config.prefix}/jwt-signing-key",
            description="Quarry's token signing secret: {jwt_secret}, the HS256 signing key (at "
            "least 32 bytes).",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({}),
                generate_string_key="jwt_secret",
                password_length=64,
                exclude_punctuation=True,
            ),
            removal_policy=config.removal_policy,
        )
        self.api_key_pepper_secret = secretsmanager.Secret(
            self,
            "ApiKeyPepperSecret",
            secret_name=f"{config.prefix}/api-key-pepper",
            description="Quarry's API key pepper (the secret string itself, at least 32 bytes), "
            "part of every stored API key hash: never change it.",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
            removal_policy=config.removal_policy,
        )
        self.provider_secrets_key = kms.Key(
            self,
            "ProviderSecretsKey",
            description="Quarry tenants' provider secrets (envelope encryption)",
            enable_key_rotation=True,
            removal_policy=config.removal_policy,
        )
        for secret in (self.milvus_secret, self.jwt_secret):
            suppress(secret, "AwsSolutions-SMG4", ROTATION_REASON)
        suppress(self.api_key_pepper_secret, "AwsSolutions-SMG4", PEPPER_ROTATION_REASON)

    # --- Aurora + RDS Proxy ---------------------------------------------------------------------
    def _database(self) -> None:
        config, vpc = self._config, self._network.vpc
        cluster_id = f"{config.prefix}-db"
        # Created here (not by RDS) so that its retention is set without a custom resource.
        logs.LogGroup(
            self,
            "PostgresLogs",
            log_group_name=f"/aws/rds/cluster/{cluster_id}/postgresql",
            retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
        self.db_sg = ec2.SecurityGroup(
            self,
            "DbSg",
            vpc=vpc,
            description="Aurora: from RDS Proxy only",
            allow_all_outbound=False,
        )
        self.proxy_sg = ec2.SecurityGroup(
            self,
            "ProxySg",
            vpc=vpc,
            description="RDS Proxy: from the functions",
            allow_all_outbound=False,
        )
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            cluster_identifier=cluster_id,
            engine=rds.DatabaseClusterEngine.aurora_postgres(
                version=rds.AuroraPostgresEngineVersion.VER_16_13
            ),
            credentials=rds.Credentials.from_generated_secret(
                DB_USER, secret_name=f"{config.prefix}/db"
            ),
            default_database_name=DB_NAME,
            writer=rds.ClusterInstance.serverless_v2("Writer"),
            readers=[
                rds.ClusterInstance.serverless_v2(f"Reader{i}", scale_with_writer=True)
                for i in range(1, config.db_readers + 1)
            ],
            serverless_v2_min_capacity=config.db_min_acu,
            serverless_v2_max_capacity=config.db_max_acu,
            vpc=vpc,
            vpc_subnets=self._network.data_subnets,
            security_groups=[self.db_sg],
            port=DB_PORT,
            storage_encrypted=True,
            iam_authentication=True,
            cloudwatch_logs_exports=["postgresql"],
            backup=rds.BackupProps(retention=Duration.days(config.db_backup_days)),
            deletion_protection=config.is_prod,
            removal_policy=RemovalPolicy.SNAPSHOT if config.is_prod else RemovalPolicy.DESTROY,
        )
        assert self.cluster.secret is not None
        self.db_secret = self.cluster.secret
        # The snapshot a prod stack leaves behind is useless without its credentials.
        generated = self.cluster.node.find_child("Secret")
        assert isinstance(generated, rds.DatabaseSecret)
        generated.apply_removal_policy(config.removal_policy)
        self.proxy = rds.DatabaseProxy(
            self,
            "Proxy",
            db_proxy_name=f"{config.prefix}-db-proxy",
            proxy_target=rds.ProxyTarget.from_cluster(self.cluster),
            secrets=[self.db_secret],
            vpc=vpc,
            vpc_subnets=self._network.data_subnets,
            security_groups=[self.proxy_sg],
            require_tls=True,
            iam_auth=config.db_iam_auth,
        )
        self.db_sg.add_ingress_rule(self.proxy_sg, ec2.Port.tcp(DB_PORT), "RDS Proxy")
        self.proxy_sg.add_egress_rule(self.db_sg, ec2.Port.tcp(DB_PORT), "Aurora")
        self.proxy_sg.add_ingress_rule(
            self._network.functions_sg, ec2.Port.tcp(DB_PORT), "Quarry functions"
        )
        self._network.functions_sg.add_egress_rule(
            self.proxy_sg, ec2.Port.tcp(DB_PORT), "RDS Proxy"
        )
        suppress(self.cluster, "AwsSolutions-SMG4", ROTATION_REASON)  # its generated secret
        if not config.is_prod:
            suppress(
                self.cluster,
                "AwsSolutions-RDS10",
                "Dev only: the dev stage is meant to be torn down with cdk destroy; prod has "
                "deletion protection and a final snapshot.",
            )
        suppress(
            self.cluster,
            "AwsSolutions-RDS11",
            "The default PostgreSQL port: the cluster is reachable only from the proxy's "
            "security group in isolated subnets, so another port would hide nothing.",
        )

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL without a password: the function reads it from ``db_secret``."""
        return (
            f"postgresql+psycopg://{DB_USER}@{self.proxy.endpoint}:{DB_PORT}/{DB_NAME}"
            "?sslmode=require"
        )

    # --- ElastiCache Serverless ---------------------------------------------------------------
    def _cache(self) -> None:
        config, vpc = self._config, self._network.vpc
        engine = config.cache_engine
        if engine not in ENGINE_MAJOR:
            raise ValueError(f"cache_engine must be one of {sorted(ENGINE_MAJOR)}")
        self.cache_secret = secretsmanager.Secret(
            self,
            "CacheSecret",
            secret_name=f"{config.prefix}/cache",
            description="ElastiCache user of the Quarry functions: {username, password}",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": CACHE_USER}),
                generate_string_key="password",
                exclude_punctuation=True,
                password_length=48,
            ),
            removal_policy=config.removal_policy,
        )
        suppress(self.cache_secret, "AwsSolutions-SMG4", ROTATION_REASON)
        # A user group must hold a user named "default"; this one is switched off.
        default_user = elasticache.CfnUser(
            self,
            "CacheDefaultUser",
            engine=engine,
            user_id=f"{config.prefix}-cache-default",
            user_name="default",
            access_string="off -@all",
            authentication_mode={"Type": "no-password-required"},
        )
        app_user = elasticache.CfnUser(
            self,
            "CacheAppUser",
            engine=engine,
            user_id=f"{config.prefix}-cache-app",
            user_name=CACHE_USER,
            access_string="on ~* &* +@all -@dangerous",
            authentication_mode={
                "Type": "password",
                "Passwords": [self.cache_secret.secret_value_from_json("password").unsafe_unwrap()],
            },
        )
        user_group = elasticache.CfnUserGroup(
            self,
            "CacheUsers",
            engine=engine,
            user_group_id=f"{config.prefix}-cache-users",
            user_ids=[default_user.user_id, app_user.user_id],
        )
        user_group.node.add_dependency(default_user)
        user_group.node.add_dependency(app_user)
        self.cache_sg = ec2.SecurityGroup(
            self,
            "CacheSg",
            vpc=vpc,
            description="ElastiCache: from the functions",
            allow_all_outbound=False,
        )
        self.cache_sg.add_ingress_rule(self._network.functions_sg, CACHE_PORTS, "Quarry functions")
        self._network.functions_sg.add_egress_rule(self.cache_sg, CACHE_PORTS, "ElastiCache")
        subnets = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            engine=engine,
            major_engine_version=ENGINE_MAJOR[engine],
            serverless_cache_name=f"{config.prefix}-cache",
            description="Quarry L2 query cache and rate limits",
            security_group_ids=[self.cache_sg.security_group_id],
            subnet_ids=subnets.subnet_ids,
            user_group_id=user_group.user_group_id,
            cache_usage_limits=elasticache.CfnServerlessCache.CacheUsageLimitsProperty(
                data_storage=elasticache.CfnServerlessCache.DataStorageProperty(
                    maximum=config.cache_max_data_gb, unit="GB"
                ),
                ecpu_per_second=elasticache.CfnServerlessCache.ECPUPerSecondProperty(
                    maximum=config.cache_max_ecpu_per_s
                ),
            ),
            snapshot_retention_limit=config.cache_snapshot_days or None,
        )
        self.cache.node.add_dependency(user_group)
        self.cache.apply_removal_policy(config.removal_policy)

    @property
    def redis_url(self) -> str:
        """TLS (``rediss``) with the app user's name; the password is in ``cache_secret``."""
        return (
            f"rediss://{CACHE_USER}@{self.cache.attr_endpoint_address}:"
            f"{self.cache.attr_endpoint_port}"
        )
