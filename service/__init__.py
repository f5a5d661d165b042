"""The FastAPI service (next issue): routes, settings and the model registry."""
