"""The base of every request body: unknown fields refused, and text that is not valid Unicode refused with
the field's name. JSON may carry a lone surrogate (`"\\ud800"`); Python's json keeps it in the str, and the
tokenizers, the response encoder and the logs then fail on it, so it must stop at validation as a 422.

And the field types the request schemas share, each stating in the OpenAPI document what the server takes:
every id bounded (ids are echoed back and logged), texts that must hold more than whitespace and lists that
must hold something (the document says so; the handlers refuse them with their own messages and `loc`s), and
integers as JSON Schema reads them (`800.0` is an integer there, so the server takes it as 800).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, field_validator
from pydantic import Strict as StrictMode

from edurank.feedback.decisions import MAX_TEXT_BYTES

# every id or name fits the feedback store's MAX_TEXT_BYTES in UTF-8 whatever its characters (4 bytes at most
# each); Kolibri Studio's ids are 32 hex digits, LECR's 14
MAX_ID_CHARS = MAX_TEXT_BYTES // 4
MAX_FILTERS = 256  # most values in a list of filters (languages, kinds, channels)
# holds a character `str.strip()` keeps (Python strips \x1c-\x1f, which Unicode's White_Space leaves out): the
# document's form of the handlers' "must not be empty or blank" (edurank.service.handlers.checks)
NOT_BLANK = r"[^\s\x1c-\x1f]"
NOT_EMPTY = {"minItems": 1}  # the document's form of the handlers' "must hold at least one"


def whole(value: Any) -> Any:
    """An integral float (`800.0`) as the int JSON Schema says it is; anything else as sent."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(**bounds: int) -> Any:
    """An integer as JSON Schema reads one: `800.0` is taken as 800; bools, strings and 800.5 are not. The
    bounds sit inside the conversion, where the OpenAPI document states them (`minimum`, not pydantic's `ge`)."""
    return Annotated[int, StrictMode(), Field(**bounds), BeforeValidator(whole)]


Integer = integer()
Natural = integer(ge=0)
Count = integer(ge=1)
Rank = integer(ge=1, lt=2**31)  # 1-based, stored in 32 bits
Int64 = integer(ge=-(2**63), lt=2**63)
Text = Annotated[StrictStr, Field(json_schema_extra={"pattern": NOT_BLANK})]
Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
Name = Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)]  # a client's free label (a model name, a user)


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
