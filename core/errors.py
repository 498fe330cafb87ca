from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """The one error type for expected failures: a message for a person, details for a program.

    The API maps it to HTTP 400 (or `status`) with `{"message": ..., "extra": ...}`; pages show
    the message as a form error or a flash message.
    """

    def __init__(self, message: str, extra: dict[str, Any] | None = None, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        self.status = status
