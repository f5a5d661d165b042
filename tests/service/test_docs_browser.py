"""/docs in a real browser: Swagger UI must render every operation of the OpenAPI document FastAPI writes
(3.1, which Swagger UI 4 refuses with "Unable to render this definition"), from files the service serves itself,
directly and behind a proxy's path prefix. The models never load (the catalog is missing): the document does not
depend on them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from edurank.service.app import create_app
from edurank.service.settings import Settings
from tests.conftest import served
from tests.service.conftest import off_host

if TYPE_CHECKING:
    from playwright.sync_api import Page

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
RENDERED = ".opblock, .swagger-ui .errors-wrapper, .swagger-ui .version-pragma"  # operations, or why there are none


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_docs_render_every_operation_offline(tmp_path: Path, page: Page, requested: list[str], screenshot_dir: Path,
                                             prefix: str) -> None:
    from playwright.sync_api import expect

    app = create_app(Settings(catalog=tmp_path / "missing", artifacts=tmp_path / "artifacts",
                              background_load=False))
    with served(Starlette(routes=[Mount(prefix, app)]) if prefix else app) as base:
        document = httpx.get(f"{base}{prefix}/openapi.json").json()
        assert document["openapi"].startswith("3.1")
        assert {"/recommend", "/rerank", "/health", "/ready", "/metrics"} <= set(document["paths"])
        operations = sum(method in METHODS for item in document["paths"].values() for method in item)

        page.goto(f"{base}{prefix}/docs")
        page.wait_for_selector(RENDERED, timeout=30_000)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=screenshot_dir / f"docs{prefix.replace('/', '-')}.png", full_page=True)

        text = page.inner_text("body")
        assert "Unable to render this definition" not in text
        assert page.locator(".swagger-ui .errors-wrapper").count() == 0, text[:500]
        shown = page.locator(".opblock").count()
        assert shown >= operations, f"{shown} operations shown of {operations}"
        recommend = page.locator(".opblock-post .opblock-summary-path[data-path='/recommend']").first
        expect(recommend).to_be_visible()
        assert int(page.evaluate("window.versions.swaggerUI.version").split(".")[0]) >= 5
        assert off_host(requested) == []
        assert any(url.startswith(f"{base}{prefix}/static/swagger-ui/") for url in requested)  # its own files
