"""The review page: GET /review (the catalog's topic tree and a form to type a topic), GET /review/topic/{id}
and GET /review/topic?title=... (a topic's recommendations to accept, reject or flag), the login that stands
in for the API key, and the JSON calls the page's script makes (record a decision, undo one, read a topic's).
Server-rendered with Jinja (autoescaped), with its own script and style sheet: nothing loads from elsewhere.
Logic lives in edurank.service.handlers.review."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from edurank.service.deps import FeedbackDep, RegistryDep
from edurank.service.errors import RequestError, safe_text
from edurank.service.handlers import feedback as feedback_logic
from edurank.service.handlers import review as logic
from edurank.service.middleware import REVIEW_COOKIE, REVIEW_SECONDS
from edurank.service.schemas.errors import error
from edurank.service.schemas.feedback import MAX_ID_CHARS, Recorded, Undone, UndoRequest
from edurank.service.schemas.review import DecisionRequest, TopicDecisions

HERE = Path(__file__).resolve().parents[1]
STATIC = "/static/review"
templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                                            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True))
# an id as one path segment: Jinja's urlencode keeps "/", and a browser would resolve an id's "." and ".." parts
templates.env.filters["segment"] = lambda value: quote(str(value), safe="")
ERRORS = {404: error("unknown topic, item or decision (`loc` names which)")}
# the page runs its own script and styles only: an injected one would not run, and no other site may frame it
POLICY = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


def base(request: Request) -> str:
    """The path the service is served under (a proxy's prefix), for the page's links."""
    return str(request.scope.get("root_path", ""))


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    settings = request.app.state.settings
    shared = {"base": base(request), "static": base(request) + STATIC, "status": status,
              "keyed": settings.api_key is not None}
    return templates.TemplateResponse(request, template, {**shared, **context}, status_code=status,
                                      headers={"Content-Security-Policy": POLICY})


class Page(APIRoute):
    """A route answering HTML: a refused request (unknown topic, bad query, models still loading) gets an HTML
    page with the same status and message instead of the JSON error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestError as err:
                return render(request, "review/error.html", err.status, message=safe_text(err.message, 600))
            except RequestValidationError as err:
                problem = err.errors()[0]
                where = ".".join(str(part) for part in problem["loc"][1:])
                return render(request, "review/error.html", 422, message=safe_text(f"{where}: {problem['msg']}"))

        return page


pages = APIRouter(prefix="/review", tags=["review"], route_class=Page, include_in_schema=False)
router = APIRouter(prefix="/review", tags=["review"])


@pages.get("", response_class=HTMLResponse)
def home(request: Request, registry: RegistryDep) -> HTMLResponse:
    """The catalog's topics by channel, and a form to type a topic."""
    return render(request, "review/index.html", channels=logic.topic_tree(registry),
                  languages=sorted(registry.languages))


@pages.get("/topic", response_class=HTMLResponse)
def typed_topic(request: Request, registry: RegistryDep, store: FeedbackDep, title: str = "",
                description: str = "", language: str = "") -> HTMLResponse:
    return render(request, "review/topic.html", view=logic.typed_topic(registry, store, title, description,
                                                                       language))


@pages.get("/topic/{topic_id:path}", response_class=HTMLResponse)
def catalog_topic(request: Request, topic_id: str, registry: RegistryDep, store: FeedbackDep) -> HTMLResponse:
    return render(request, "review/topic.html", view=logic.catalog_topic(registry, store, topic_id))


@pages.get("/login", response_class=HTMLResponse)
def login_form(request: Request, back: Annotated[str | None, Query(alias="next")] = None) -> HTMLResponse:
    return render(request, "review/login.html", next=logic.next_page(back), problem=None)


@pages.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """The API key typed into the form, as a cookie the review pages accept for REVIEW_SECONDS (when it was
    issued and an HMAC of that by the key, never the key): HttpOnly, SameSite=Strict, scoped to /review, and
    Secure when the request came over https (`request.url.scheme`: behind a proxy that ends TLS, uvicorn's
    --proxy-headers with --forwarded-allow-ips makes its X-Forwarded-Proto count)."""
    settings = request.app.state.settings
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    sent, back = form.get("key", [""])[0], logic.next_page(form.get("next", [None])[0])
    token = logic.login(settings, sent)
    if token is None:
        problem = "that is not the key" if settings.api_key else "no key is set: the page is open"
        return render(request, "review/login.html", 401, next=back, problem=problem)
    response = RedirectResponse(base(request) + back, status_code=303)
    response.set_cookie(REVIEW_COOKIE, token, max_age=REVIEW_SECONDS, httponly=True, samesite="strict",
                        path=base(request) + logic.HOME, secure=request.url.scheme == "https")
    return response


@pages.post("/logout")
def logout(request: Request) -> Response:
    response = RedirectResponse(base(request) + "/review/login", status_code=303)
    response.delete_cookie(REVIEW_COOKIE, path=base(request) + logic.HOME, httponly=True, samesite="strict")
    return response


@router.get("/decisions", response_model=TopicDecisions, responses=ERRORS)  # type: ignore[arg-type]
def topic_decisions(request: Request, topic_id: Annotated[str, Query(min_length=1, max_length=MAX_ID_CHARS)],
                    registry: RegistryDep, store: FeedbackDep) -> TopicDecisions:
    """A topic's decisions: the current one per item, and the latest ones newest first (undone ones included)."""
    return logic.decisions(request.app.state, registry, store, topic_id)


@router.post("/decisions", response_model=Recorded, status_code=201, responses=ERRORS)  # type: ignore[arg-type]
def record(body: DecisionRequest, registry: RegistryDep, store: FeedbackDep) -> Recorded:
    """Accept, reject or flag an item shown for a topic; stored with its rank and probability as shown, who
    decided, when, and the served models' versions. Durable before the answer."""
    return Recorded(ids=[logic.record(registry, store, body)], recorded=1)


@router.post("/decisions/{decision_id}/undo", response_model=Undone, responses=ERRORS)  # type: ignore[arg-type]
def undo(request: Request, decision_id: Annotated[int, PathParam(ge=1, lt=2**63)], store: FeedbackDep,
         body: UndoRequest | None = None) -> Undone:
    """Mark a decision undone (it stays in the history); the item's decision is then its previous one."""
    return feedback_logic.undo(request.app.state, store, decision_id, body.who if body else None)


def mount_review(app: FastAPI) -> None:
    """The page's routes, and its script and style sheet (public, like Swagger UI's files)."""
    app.mount(STATIC, StaticFiles(directory=HERE / "static" / "review"), name="review-static")
    app.include_router(pages)
