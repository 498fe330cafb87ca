"""Servers and workers started as processes of their own (gunicorn, `celery worker`) on this test's
PostgreSQL database and Redis, for the integration tests that need more than one process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from tests.needs import unavailable

ROOT = Path(__file__).resolve().parents[2]


def require_postgresql_and_redis(*, postgresql: str, redis: str) -> None:
    """Skip (fail under CI=true) unless the tests run on PostgreSQL with Redis; the arguments say
    what the processes need each for."""
    if connection.vendor != "postgresql":
        unavailable(f"needs PostgreSQL, {postgresql}: set DATABASE_URL=postgres://...")
    if not settings.REDIS_URL:
        unavailable(f"needs Redis, {redis}: set REDIS_URL=redis://.../<db>")


def shared_database_url() -> str:
    """The database this test runs in (pytest-django's test_<name>), for the processes it starts."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{auth}@{host}/{db['NAME']}"


def shared_env(**extra: str) -> dict[str, str]:
    """This environment, pointed at the test's database and Redis, output unbuffered (for the logs)."""
    return {
        **os.environ,
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def celery_worker_command(hostname: str, *options: str) -> list[str]:
    """`celery worker` for the project: one task at a time (solo pool), no gossip or mingle with the
    other workers the test starts; `options` such as --queues come last."""
    return [
        sys.executable, "-m", "celery", "-A", "spheron_web", "worker", "--pool=solo", "--loglevel=INFO",
        "--without-gossip", "--without-mingle", "--hostname", hostname, *options,
    ]  # fmt: skip


def spawn(command: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `command` in the project's folder, its output (both streams) written to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(processes: Iterable[subprocess.Popen]) -> None:
    """SIGTERM all, then wait for each; one that does not stop within 20 s is killed."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
