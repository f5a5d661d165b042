"""The service's one error shape: a `detail` list whose `loc` names the field (or `body`, `path`, `header`),
as FastAPI's own validation errors are, for every 4xx and 5xx, so clients handle one shape. Messages are cut
short and never carry file-system paths or library internals."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from jsonschema import Draft7Validator
from jsonschema import ValidationError as SchemaError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from edurank.service.batcher import Overloaded

Loc = Sequence[str | int]
Model = TypeVar("Model", bound=BaseModel)
MAX_SCHEMA_ERRORS = 10
# absolute paths, and library source locations such as faiss/impl/index_read.cpp:276
PATHS = re.compile(r"(?<![\w.:/])(?:~?/[^\s'\":,;()]+)+(?::\d+)?|[\w./-]+\.(?:cpp|cc|c|h|hpp|py|pyx|rs):\d+")
BODY_ERRORS = {UnicodeDecodeError: "the body is not valid UTF-8", RecursionError: "the body nests too deeply",
               ValueError: "the body holds a number too long to read"}  # why FastAPI's 400 could not parse it
HTTP_LOCS = {404: "path", 405: "method", 413: "body", 408: "body", 401: "header", 403: "header", 429: "header"}


class RequestError(Exception):
    def __init__(self, field: Loc, message: str, status: int = 422):
        super().__init__(message)
        self.field, self.message, self.status = tuple(field), message, status

    def detail(self) -> list[dict[str, object]]:
        return [{"loc": ["body", *self.field], "msg": safe_text(self.message, 600), "type": "value_error"}]


def error_response(status: int, loc: Loc, message: str, kind: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The one error shape, for errors that do not come from a request field's validation."""
    return JSONResponse(status_code=status, headers=dict(headers or {}),
                        content={"detail": [{"loc": list(loc), "msg": safe_text(message), "type": kind}]})


def safe_text(text: str, limit: int = 200) -> str:
    """At most `limit` characters, lone surrogates escaped: safe to encode as JSON and to log."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."


def public_message(text: str, known: Iterable[tuple[Path | str, str]] = ()) -> str:
    """A server-side message fit for clients: each configured path named by its setting (`known`: path,
    name), any other absolute path or library source location replaced by `<path>`."""
    for path, name in sorted(((str(p), n) for p, n in known if str(p) not in ("", ".")), key=lambda k: -len(k[0])):
        for form in {str(Path(path).resolve()), path}:  # as given and absolute, each only as a whole path
            text = re.sub(rf"(?<![\w./-]){re.escape(form)}(?![\w.-])", lambda _, name=name: name, text)
    return safe_text(PATHS.sub("<path>", text), 300)


def parse_body(model: type[Model], body: Any, schema: Draft7Validator | None = None) -> Model:
    """A body read into `model`, checked first against a published JSON Schema when one is given; any
    violation is FastAPI's 422 with `loc` naming the field, as for a typed route."""
    if schema is not None:
        problems = sorted(schema.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
        if problems:
            raise RequestValidationError([schema_problem(e) for e in problems[:MAX_SCHEMA_ERRORS]])
    try:
        return model.model_validate(body)
    except ValidationError as err:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in err.errors()]) from None


def schema_problem(error: SchemaError) -> dict[str, Any]:
    """One JSON Schema violation in FastAPI's shape; a missing or unexpected property is named in `loc`."""
    loc: list[str | int] = ["body", *error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        loc += [name for name in error.validator_value if name not in error.instance][:1]
        message = "Field required"
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        loc += [name for name in error.instance if name not in known][:1]
        message = "Extra inputs are not permitted"
    else:
        message = error.message
    return {"loc": tuple(loc), "msg": message, "type": f"schema_{error.validator}"}


async def request_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestError)
    return JSONResponse(status_code=error.status, content={"detail": error.detail()})


async def validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 body, minus the echoed input (it may be a megabyte of essay), with each `loc` part and
    `msg` cut short and made encodable (an unknown field's name is the client's text)."""
    assert isinstance(error, RequestValidationError)
    detail = [{"loc": [part if isinstance(part, int) else safe_text(str(part)) for part in e["loc"]],
               "msg": safe_text(str(e["msg"])), "type": e["type"]} for e in error.errors()]
    return JSONResponse(status_code=422, content={"detail": detail})


async def http_error_handler(request: Request, error: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own HTTP errors (404, 405, the 400 of a body that is not JSON) in the one
    shape, saying why a body could not be read where FastAPI only says that it could not."""
    assert isinstance(error, HTTPException)
    message = str(error.detail)
    if error.status_code == 400:
        message = next((why for kind, why in BODY_ERRORS.items() if isinstance(error.__cause__, kind)), message)
    return error_response(error.status_code, [HTTP_LOCS.get(error.status_code, "body")], message, "http_error",
                          error.headers)


async def overloaded_handler(request: Request, error: Exception) -> JSONResponse:
    """A full model queue: 503 at once, with Retry-After, in the same error shape."""
    assert isinstance(error, Overloaded)
    return error_response(503, ["body"], str(error), "overloaded", {"Retry-After": str(error.retry_after)})
