"""QuarryStack: composes one construct per capability and wires them together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from quarry_infra.api import Api
from quarry_infra.config import StageConfig
from quarry_infra.data import Data
from quarry_infra.events import DomainEvents
from quarry_infra.functions import Functions
from quarry_infra.gpu import GpuEndpoint
from quarry_infra.network import Network
from quarry_infra.observability import Observability
from quarry_infra.sagas import Sagas, ingestion_state_machine_name, state_machine_arn
from quarry_infra.storage import Storage
from quarry_infra.tuning import TuningSchedule
from quarry_infra.workflows import Workflows


class QuarryStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        repo_root: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        network = Network(self, "Network", config=config)
        data = Data(self, "Data", config=config, network=network)
        storage = Storage(self, "Storage", config=config)
        domain_events = DomainEvents(self, "Events", config=config)
        gpu = GpuEndpoint(self, "Gpu", config=config, repo_root=repo_root)
        self.functions = Functions(
            self,
            "Functions",
            config=config,
            network=network,
            data=data,
            storage=storage,
            events=domain_events,
            gpu=gpu,
            saga_state_machine_arn=state_machine_arn(self, ingestion_state_machine_name(config)),
            repo_root=repo_root,
        )
        ingestion = self.functions.by_domain["ingestion"]
        storage.route_object_events_to(ingestion)
        sagas = Sagas(self, "Sagas", config=config, function=ingestion)
        Workflows(self, "Workflows", config=config, function=self.functions.by_domain["workflows"])
        api = Api(self, "Api", config=config, functions=self.functions)
        tuning = TuningSchedule(
            self, "Tuning", config=config, function=self.functions.by_domain["tuning"]
        )
        Observability(
            self,
            "Observability",
            config=config,
            api=api,
            functions=self.functions,
            state_machine=sagas.state_machine,
            queues={
                **{f"function-{name}": q for name, q in self.functions.dlqs.items()},
                "document-events": storage.object_events_dlq,
                "tuning-schedule": tuning.dlq,
            },
        )
        outputs = {
            "ApiUrl": api.url,
            "DocumentsBucket": storage.bucket.bucket_name,
            "IngestionStateMachineArn": sagas.state_machine.state_machine_arn,
            "EventBusName": domain_events.bus.event_bus_name,
            "GpuEndpointName": gpu.endpoint_name,
            "MilvusSecretArn": data.milvus_secret.secret_arn,
            "DatabaseSecretArn": data.db_secret.secret_arn,
            "DatabaseProxyEndpoint": data.proxy.endpoint,
        }
        if gpu.inference_component_name:  # what `invoke-endpoint --inference-component-name` takes
            outputs["GpuInferenceComponentName"] = gpu.inference_component_name
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
