"""`/docs` with Swagger UI 5 served from the `fastapi-offline` package instead of a CDN: the service runs on
air-gapped servers, where FastAPI's default page would load blank (and Swagger UI 4 cannot read OpenAPI 3.1)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/static/swagger-ui"
SWAGGER_UI = files("fastapi_offline") / "static"  # the package's Swagger UI (and ReDoc) files, as published
router = APIRouter(include_in_schema=False)


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(openapi_url=f"{root}{request.app.openapi_url}",
                               title=f"{request.app.title} - Swagger UI",
                               swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
                               swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
                               swagger_favicon_url=f"{root}{STATIC}/favicon.png")


def mount_docs(app: FastAPI) -> None:
    app.mount(STATIC, StaticFiles(directory=str(SWAGGER_UI)), name="swagger-ui")
    app.include_router(router)
