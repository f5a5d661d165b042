"""Admin routes, behind EDURANK_API_KEY (edurank.service.middleware.Guard): POST /admin/reload."""

from __future__ import annotations

from fastapi import APIRouter, Request

from edurank.service.reload import reload_everywhere
from edurank.service.schemas.admin import ReloadResponse
from edurank.service.schemas.errors import error

router = APIRouter(prefix="/admin", tags=["admin"])


RESPONSES = {403: error("the admin routes are off: no EDURANK_API_KEY is set"),
             409: error("the new versions were refused (the reason is given) or a reload runs")}


@router.post("/reload", response_model=ReloadResponse, responses=RESPONSES)  # type: ignore[arg-type]
def reload(request: Request) -> ReloadResponse:
    """Swap in the newest published versions without a restart: requests in flight finish on the old ones;
    a set that fails to load or to check out is refused and the old one keeps serving. With several replicas
    (`edurank serve --replicas`), every replica swaps."""
    return ReloadResponse(**reload_everywhere(request.app.state, request.app.state.settings))
