from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from django.core.cache import cache

pytest_plugins = ["tests.chain_fixtures", "tests.integration.agents"]

CALENDAR_HELP = (
    "Run as if today were this UTC date (YYYY-MM-DD, at the current time of day) or moment "
    "(YYYY-MM-DDTHH:MM[:SS]): the whole process's clock is moved there for the session and keeps "
    "ticking (time-machine). With -m calendar, runs the date-sensitive tests at a calendar edge."
)


def pytest_addoption(parser):
    parser.addoption("--calendar", metavar="DATE", default=None, help=CALENDAR_HELP)


def calendar_moment(value: str, *, now: datetime) -> datetime:
    """`--calendar`'s value as a UTC moment: a bare date keeps the time of day of `now`."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise pytest.UsageError(f"--calendar={value!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]") from None
    if moment.tzinfo is not None:
        return moment.astimezone(UTC)
    if len(value) == len("YYYY-MM-DD"):
        real = now.astimezone(UTC)
        return datetime.combine(moment.date(), time(real.hour, real.minute, real.second), tzinfo=UTC)
    return moment.replace(tzinfo=UTC)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """--calendar: move every clock this process reads (datetime, date.today, time.time, so
    timezone.now, core.clock, auto_now fields, the live server's thread) to that date.

    Nothing the product stores or compares comes from the database's own now(), so this holds on
    SQLite and PostgreSQL alike. Processes the tests start (agents, workers) keep the real clock:
    the calendar tests start none."""
    value = config.getoption("--calendar")
    if not value:
        return
    import time_machine

    moment = calendar_moment(value, now=datetime.now(UTC))
    traveller = time_machine.travel(moment, tick=True)
    traveller.start()
    config._calendar_travel = traveller
    config._calendar_moment = moment


def pytest_unconfigure(config):
    traveller = getattr(config, "_calendar_travel", None)
    if traveller is not None:
        traveller.stop()
        config._calendar_travel = None


def pytest_report_header(config):
    moment = getattr(config, "_calendar_moment", None)
    if moment is not None:
        return f"calendar: the clock starts at {moment.isoformat()} (--calendar), and ticks"


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
    """Tests that move the server's clock (core.clock.advance) never leak it."""
    from core import clock

    clock.reset()
    yield
    clock.reset()


@pytest.fixture
def midday():
    """Today at 12:00 UTC, with every clock moved there (and ticking) for the test.

    For a test that derives its dates from today and then asks the product, which reads the clock
    again: started at 23:59:59, the date would change in between.
    """
    import time_machine
    from django.utils import timezone

    moment = datetime.combine(timezone.now().astimezone(UTC).date(), time(12), tzinfo=UTC)
    with time_machine.travel(moment, tick=True):
        yield moment


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


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test databases, left whole for the next run.

    A transactional test empties every table when it ends (the serialized copy is loaded back at the
    start of the next one, not after the last). The last of a run would leave the kept test database
    (`--reuse-db`, this project's default) without the rows migrations load (GPU models, regions,
    templates, the site), and the next run, such as CI's calendar runs, would start broken. So the
    serialized copy is loaded back at the end of the session when that data is missing; a database
    already broken by an older run is refused at once with what to do."""
    from django.db import connections

    def reference_rows(connection) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM providers_gpumodel")
            return cursor.fetchone()[0]

    with django_db_blocker.unblock():
        connection = connections["default"]
        if reference_rows(connection) == 0:
            pytest.exit(
                "The kept test database has no reference data (an older run's last transactional test "
                "emptied it): run pytest once with --create-db.",
                returncode=3,
            )
        # pytest-django serializes only when a collected test asks for serialized_rollback; a run of
        # other transactional tests alone (`-k`, one file) would have nothing to load back. ~0.1 s.
        for each in connections.all():
            if getattr(each, "_test_serialized_contents", None) is None:
                each._test_serialized_contents = each.creation.serialize_db_to_string()
    yield
    with django_db_blocker.unblock():
        for connection in connections.all():
            contents = getattr(connection, "_test_serialized_contents", None)
            if contents and reference_rows(connection) == 0:
                connection.creation.deserialize_db_from_string(contents)
