"""Routers: inference routes apart from the operational ones (health, readiness, metrics)."""
