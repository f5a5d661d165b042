"""Request errors raised by the service's logic, rendered like FastAPI's own validation errors (a `detail`
list whose `loc` names the field), so clients handle one error shape."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request
from fastapi.responses import JSONResponse

from service.batching import Overloaded


class RequestError(Exception):
    def __init__(self, field: Sequence[str | int], message: str, status: int = 422):
        super().__init__(message)
        self.field, self.message, self.status = tuple(field), message, status

    def detail(self) -> list[dict[str, object]]:
        return [{"loc": ["body", *self.field], "msg": self.message, "type": "value_error"}]


async def request_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestError)
    return JSONResponse(status_code=error.status, content={"detail": error.detail()})


async def overloaded_handler(request: Request, error: Exception) -> JSONResponse:
    """A full model queue: 503 at once, with Retry-After, in the same error shape."""
    assert isinstance(error, Overloaded)
    return JSONResponse(status_code=503, headers={"Retry-After": str(error.retry_after)},
                        content={"detail": [{"loc": ["body"], "msg": str(error), "type": "overloaded"}]})
