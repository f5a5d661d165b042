"""Shared checks of the service tests."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from httpx import Response

from edurank.service.app import create_app
from edurank.service.settings import Settings
from tests.conftest import write_catalog


def assert_names_the_field(response: Response, status: int, loc: list, message: str) -> None:
    """The error answer FastAPI's validation format gives: `status`, `detail[0].loc`, a message containing
    `message` (case-insensitive)."""
    assert response.status_code == status
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc and message.lower() in detail["msg"].lower()


def post_untrained(tmp_path: Path, route: str, body: dict) -> dict:
    """POST `body` to `route` of a service with no trained artifacts; returns the 503 answer's first detail."""
    settings = Settings(artifacts=tmp_path / "artifacts", catalog=write_catalog(tmp_path / "catalog"),
                        background_load=False)
    with TestClient(create_app(settings)) as client:
        response = client.post(route, json=body)
    assert response.status_code == 503
    return response.json()["detail"][0]
