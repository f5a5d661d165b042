"""The FastAPI service: settings, the model registry, schemas per API area, thin routes over plain functions."""
