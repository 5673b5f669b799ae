"""HTTP routes of the workflows domain."""

from __future__ import annotations

from functions.common.health_routes import domain_health_router

router = domain_health_router("workflows")
