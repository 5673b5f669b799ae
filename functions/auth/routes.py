"""HTTP routes of the auth domain."""

from __future__ import annotations

from functions.common.health_routes import domain_health_router

router = domain_health_router("auth")
