"""Filters and the page number from a page's query string, shared by every list page (catalog, transactions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
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


def query_page(
    paginator: Paginator, number: str | None, errors: dict[str, str] | None = None, *, past_end: str = "last"
) -> Page:
    """The page `?page=` names, never a 404 or a 500: page 1 for an empty value or one that is not a
    whole number (said in errors["page"] when `errors` is given); past either end, the last page
    (`past_end="first"`: the first)."""
    try:
        return paginator.page(number or 1)
    except PageNotAnInteger:
        if errors is not None:
            errors["page"] = "must be a whole number"
        return paginator.page(1)
    except EmptyPage:
        return paginator.page(1 if past_end == "first" else paginator.num_pages)
