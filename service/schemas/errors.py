"""The one error body of every 4xx and 5xx (`edurank.service.errors`), and the responses each inference route
declares in the OpenAPI document with it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="where: `body` and the field's path, or `path`, `header`, `method`")
    msg: str = Field(description="what is wrong, in a sentence (a bad value is echoed at most as a short prefix)")
    type: str


class ErrorBody(BaseModel):
    detail: list[ErrorItem]


def error(description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        response["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                               for name, text in headers.items()}
    return response


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error("the body is not JSON (or not UTF-8, nested too deeply, a number too long)"),
    401: error("an API key is required (EDURANK_REQUIRE_KEY) and none valid was sent",
               **{"WWW-Authenticate": "Bearer"}),
    408: error("the body took longer than EDURANK_BODY_TIMEOUT to arrive"),
    413: error("the body is larger than EDURANK_MAX_BODY_BYTES"),
    422: error("a field is invalid: `loc` names it"),
    429: error("over the client's rate limit (EDURANK_RATE_LIMIT)", **{"Retry-After": "seconds to wait"}),
    503: error("models still loading, this route's model not loaded, or its queue full",
               **{"Retry-After": "seconds to wait (a full queue)"}),
}
