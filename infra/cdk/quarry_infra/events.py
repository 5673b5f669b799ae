"""The EventBridge bus that carries Quarry's domain events (``document.ready``, ``kb.changed``,
...). S3's own notifications arrive on the default bus; see ``storage``."""

from __future__ import annotations

from aws_cdk import aws_events as events
from constructs import Construct

from quarry_infra.config import StageConfig


class DomainEvents(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(
            self,
            "Bus",
            event_bus_name=f"{config.prefix}-events",
            description="Quarry domain events",
        )
        self.bus.apply_removal_policy(config.removal_policy)
