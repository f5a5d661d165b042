"""The base of every request body: unknown fields refused, and text that is not valid Unicode refused with
the field's name. JSON may carry a lone surrogate (`"\\ud800"`); Python's json keeps it in the str, and the
tokenizers, the response encoder and the logs then fail on it, so it must stop at validation as a 422."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


def lone_surrogate(value: Any) -> bool:
    """Whether a str, or a list of them (nested models are checked by their own validators), cannot be
    encoded as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    return isinstance(value, list) and any(lone_surrogate(item) for item in value)


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def valid_unicode(cls, value: Any) -> Any:
        if lone_surrogate(value):
            raise ValueError("text is not valid Unicode: it holds a lone surrogate (\\ud800-\\udfff)")
        return value


def one_of(*forms: dict[str, str]) -> dict[str, Any]:
    """JSON Schema for "exactly one of these forms", each given as {field: JSON type it must have}, so the
    OpenAPI document states the one-of rule the model's validator enforces (fields are nullable, so each
    form requires its fields present with a non-null type)."""
    return {"oneOf": [{"required": list(form), "properties": {name: {"type": kind} for name, kind in form.items()}}
                      for form in forms]}
