from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class ErrorOut(BaseModel):
    """Every API error: a message for a person, details for a program."""

    message: str
    extra: dict


# Declared on operations so the OpenAPI schema documents the error shape.
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


class NoNulIn(BaseModel):
    """A request body in which no string may hold a NUL byte (PostgreSQL text cannot)."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL bytes")
        return value


class AgentIn(NoNulIn):
    """A body a node's agent sends: unknown fields are ignored (a newer agent may send more)."""

    model_config = ConfigDict(extra="ignore")
