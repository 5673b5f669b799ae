"""HTTP routes of the kb_admin domain."""

from __future__ import annotations

from functions.common.health_routes import domain_health_router

router = domain_health_router("kb_admin")
