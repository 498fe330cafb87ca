from __future__ import annotations

from pathlib import Path

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    """The market board is cached; each test starts from an empty cache."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """PBKDF2's deliberate slowness buys nothing in tests."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_collection_modifyitems(items):
    """Give every transactional test (live server, threads) a serialized rollback.

    Such tests empty every table when they end, including the reference data and content types
    that migrations load; restoring a serialized copy keeps later tests working in any order.
    pytest-django turns it on when the fixture name is requested, so request it for them.
    """
    for item in items:
        names = getattr(item, "fixturenames", None)
        if names is None:
            continue
        marker = item.get_closest_marker("django_db")
        transactional = "live_server" in names or "transactional_db" in names
        transactional = transactional or bool(marker and marker.kwargs.get("transaction"))
        if transactional and "django_db_serialized_rollback" not in names:
            names.append("django_db_serialized_rollback")


@pytest.fixture(autouse=True)
def _real_clock():
    """Tests that move the server's clock (spheron_web.clock.advance) never leak it."""
    from spheron_web import clock

    clock.reset()
    yield
    clock.reset()


@pytest.fixture(scope="session", autouse=True)
def _empty_test_task_queue():
    """Without Redis, the tasks tests queue on commit (matching, demo agents) land in the filesystem
    broker under the tests' own folder (SPHERON_VAR_DIR=var/test) and no worker takes them: empty
    it as a run starts, so it does not grow run after run. Never the folder `make run` uses."""
    from django.conf import settings

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    if settings.CELERY_BROKER_URL.startswith("filesystem") and settings.VAR_DIR != settings.BASE_DIR / "var":
        for message in Path(options["data_folder_in"]).glob("*.msg"):
            message.unlink(missing_ok=True)
    yield
