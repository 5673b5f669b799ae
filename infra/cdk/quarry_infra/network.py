"""The VPC: two AZs, public subnets (NAT only), private subnets with egress for the functions,
isolated subnets for the database and the cache, VPC endpoints for the AWS APIs the functions
call, and flow logs of rejected traffic."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from quarry_infra.config import StageConfig
from quarry_infra.nag import suppress

HTTPS_PORT = 443
# Interface endpoints keep these calls off the NAT gateway (and its per-GB charge).
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "StepFunctions": ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
    "EventBridge": ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
}


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="functions", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
                ec2.SubnetConfiguration(
                    name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            flow_logs={
                "Rejected": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )
        self.function_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.data_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.function_subnets]
        )
        for name, service in INTERFACE_ENDPOINTS.items():
            endpoint = self.vpc.add_interface_endpoint(
                name, service=service, subnets=self.function_subnets, private_dns_enabled=True
            )
            suppress(
                endpoint,
                "CdkNagValidationFailure",
                "EC23 cannot evaluate the ingress CIDR, a reference to the VPC's own CIDR block: "
                "the endpoint accepts HTTPS from inside the VPC only.",
            )
        # Egress is opened per destination (HTTPS here; the database and the cache open their
        # own ports in the data construct) instead of to everything.
        self.functions_sg = ec2.SecurityGroup(
            self,
            "FunctionsSg",
            vpc=self.vpc,
            description="Quarry functions: HTTPS out, plus the database and the cache",
            allow_all_outbound=False,
        )
        self.functions_sg.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(HTTPS_PORT),
            "AWS APIs (VPC endpoints, NAT) and the Milvus/Zilliz server over HTTPS",
        )
        if config.milvus_port != HTTPS_PORT:
            self.functions_sg.add_egress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(config.milvus_port), "Milvus server"
            )
