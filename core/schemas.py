from __future__ import annotations

from pydantic import BaseModel


class ErrorOut(BaseModel):
    """Every API error: a message for a person, details for a program."""

    message: str
    extra: dict


# Declared on operations so the OpenAPI schema documents the error shape.
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}
