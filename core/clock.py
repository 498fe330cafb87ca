"""The server's clock. Everything time-based in liveness reads `now()` so tests can move time.

`advance()` shifts the clock of this process only (the live test server runs in the test's
process, so a test can make an hour pass between two heartbeats of a real agent).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

_offset = timedelta(0)


def now() -> datetime:
    return timezone.now() + _offset


def advance(seconds: float) -> None:
    global _offset
    _offset += timedelta(seconds=seconds)


def reset() -> None:
    global _offset
    _offset = timedelta(0)
