"""The suite's --calendar option (tests/conftest.py): it moves every clock the product reads, and
the product never reads the database's own clock (which time-machine cannot move), so a calendar
run means the same on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import User
from core import clock
from tests.conftest import calendar_moment
from tests.factories import make_user

pytestmark = pytest.mark.calendar
APPS = ("accounts", "billing", "core", "marketplace", "providers", "spheron_web")
# SQL's clock (now(), CURRENT_TIMESTAMP…), SQLite's datetime('now') and Django's Now()/db_default.
DATABASE_CLOCK = re.compile(
    r"(?<!def )(?<![.\w`])now\(\)|(?<![.\w])Now\(|db_default"
    r"|(?i:current_timestamp|current_date|localtimestamp|statement_timestamp|clock_timestamp"
    r"|transaction_timestamp|datetime\('now')"
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-01-01", datetime(2027, 1, 1, 15, 4, 5, tzinfo=UTC)),  # today's time of day
        ("2027-12-31T23:59:30", datetime(2027, 12, 31, 23, 59, 30, tzinfo=UTC)),
        ("2028-02-29T10:00+02:00", datetime(2028, 2, 29, 8, 0, tzinfo=UTC)),
    ],
)
def test_calendar_values_are_utc_moments(value: str, expected: datetime):
    assert calendar_moment(value, now=datetime(2026, 12, 4, 15, 4, 5, 678, tzinfo=UTC)) == expected


@pytest.mark.parametrize("value", ["31/12/2027", "2027-02-29", "tomorrow"])
def test_a_bad_calendar_value_stops_the_run_with_a_usage_error(value: str):
    with pytest.raises(pytest.UsageError, match="--calendar"):
        calendar_moment(value, now=datetime(2026, 12, 4, tzinfo=UTC))


@pytest.mark.django_db
def test_every_clock_the_product_reads_is_the_calendars(request):
    """timezone.now, core.clock, time.time and a row stamped on save all tell one time: the
    --calendar date when given (the run may have ticked past midnight since it started)."""
    now = timezone.now()
    user = make_user(email="calendar@example.test")
    stored = User.objects.values_list("date_joined", flat=True).get(id=user.id)

    assert abs(clock.now() - now) < timedelta(minutes=1)
    assert abs(datetime.fromtimestamp(time.time(), tz=UTC) - now) < timedelta(minutes=1)
    assert abs(stored - now) < timedelta(minutes=1)
    moment = getattr(request.config, "_calendar_moment", None)
    if moment is not None:
        assert moment <= now < moment + timedelta(hours=2)


def test_product_code_never_reads_the_databases_clock():
    found = [
        f"{path.relative_to(settings.BASE_DIR)}:{number}: {line.strip()}"
        for app in APPS
        for path in sorted((Path(settings.BASE_DIR) / app).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if DATABASE_CLOCK.search(line)
    ]
    assert found == [], "time-machine cannot move the database's clock: use timezone.now() or clock.now()"


def test_the_database_clock_pattern_finds_what_it_looks_for():
    for line in ["created_at = models.DateTimeField(db_default=Now())", "WHERE expires_at < now()",
                 "SET updated_at = CURRENT_TIMESTAMP", "datetime('now')", ".annotate(at=Now())"]:  # fmt: skip
        assert DATABASE_CLOCK.search(line), line
    for line in ["now = timezone.now()", "clock.now() + delta", "def now() -> datetime:", "reads `now()` so"]:
        assert not DATABASE_CLOCK.search(line), line
