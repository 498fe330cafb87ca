"""Filters from a page's query string, shared by every list page (catalog, transactions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

FilterT = TypeVar("FilterT", bound=BaseModel)


def clean_query_value(value: Any) -> Any:
    """For `field_validator("*", mode="before")`: refuse NUL bytes; an empty form field is None."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL bytes")
        return value.strip() or None
    return value


def parse_query_filters(model: type[FilterT], query: Mapping[str, str]) -> tuple[FilterT, dict[str, str]]:
    """Validate the model's fields from `query`. A bad value is dropped and explained, never a 500.

    Returns the filter built from the good values and {field: message} for the bad ones.
    """
    fields = tuple(model.model_fields)
    raw = {key: query[key] for key in fields if key in query}
    errors: dict[str, str] = {}
    while True:
        try:
            return model.model_validate(raw), errors
        except ValidationError as exc:
            dropped = set()
            for error in exc.errors():
                message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
                loc = error.get("loc") or ()
                field = str(loc[0]) if loc else message.split(":", 1)[0]
                if field in raw:
                    dropped.add(field)
                    message = message.removeprefix(f"{field}: ")
                errors[field if field in fields else "filters"] = message
            if not dropped:  # cannot tell which value is wrong: show everything unfiltered
                return model(), errors
            for field in dropped:
                raw.pop(field)
