from __future__ import annotations

from celery import shared_task


@shared_task(name="spheron_web.tasks.ping")
def ping() -> str:
    """Round-trip check for the broker and a worker (used by `manage.py check_worker` and tests)."""
    return "pong"
