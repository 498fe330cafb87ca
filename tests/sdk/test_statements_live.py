"""Monthly statements from Python (spheron_sdk.client) and from `sphnctl` (a subprocess), against
the live test server: a month with a top-up and usage (last month), and the running one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from django.utils import timezone
from spheron_sdk.client import Client
from spheron_sdk.errors import NotFound, PermissionDenied, ValidationError

from accounts.api_keys import api_key_create
from billing.statements import statement_get
from core.money import exact_usd
from tests.billing_pages.conftest import USD, fund, rent
from tests.factories import make_user
from tests.sdk import test_client_live as client_tests
from tests.sdk.test_cli_live import parsed, run  # noqa: F401  (run: the sphnctl fixture)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
_sqlite_reads_do_not_wait = client_tests._sqlite_reads_do_not_wait


@dataclass(frozen=True)
class Months:
    last: tuple[int, int]
    current: tuple[int, int]
    next: tuple[int, int]

    @staticmethod
    def slug(month: tuple[int, int]) -> str:
        return f"{month[0]:04d}-{month[1]:02d}"


def _month(index: int) -> tuple[int, int]:
    year, month = divmod(index, 12)
    return year, month + 1


@pytest.fixture
def months() -> Months:
    """Last month, this one and the next, from today (UTC)."""
    today = timezone.now().astimezone(UTC)
    index = today.year * 12 + today.month - 1
    return Months(last=_month(index - 1), current=_month(index), next=_month(index + 1))


@pytest.fixture
def renter(transactional_db, months):
    """Joined last month: a $50 top-up and $7.50 of usage then (the hold released), $5 this month."""
    last = months.last
    user = make_user(email="statements@example.test", name="Stella Statement")
    type(user).objects.filter(id=user.id).update(date_joined=datetime(*last, 2, 9, tzinfo=UTC))
    user.refresh_from_db()
    host = make_user(email="statements-host@example.test", is_provider=True, is_developer=False)
    fund(user, 50 * USD, when=datetime(*last, 10, 12, tzinfo=UTC), memo="Top-up last month")
    rent(
        user,
        host,
        hold=20 * USD,
        charges=[(7_500_000, datetime(*last, 20, 12, tzinfo=UTC))],
        when=datetime(*last, 19, 12, tzinfo=UTC),
        lease="77",
        release_at=datetime(*last, 21, 12, tzinfo=UTC),
    )
    fund(user, 5 * USD, memo="Top-up this month")
    return user


def key(user, *scopes: str) -> str:
    _key, raw = api_key_create(user=user, label="statements tests", scopes=list(scopes) or ["full"])
    return raw


def test_sdk_lists_months_and_reads_a_statement_that_adds_up(live_server, renter, months):
    m = months
    with Client(live_server.url, key(renter, "read"), timeout=20, retries=0) as api:
        listed = api.billing.statements()
        assert [row["period"] for row in listed] == [Months.slug(m.current), Months.slug(m.last)]
        closed = listed[1]
        assert (closed["topups"], closed["usage"], closed["other"], closed["net"]) == (
            "50.000000",
            "7.500000",
            "0.000000",
            "42.500000",
        )
        assert listed[0]["current"] and listed[0]["topups_micros"] == 5 * USD

        statement = api.billing.statement(Months.slug(m.last))
        assert api.billing.statement(m.last) == statement  # (year, month) works the same
        expected = statement_get(user=renter, year=m.last[0], month=m.last[1])  # the page's Statement
        assert statement["number"] == expected.number
        assert (statement["opening_micros"], statement["total_micros"], statement["closing_micros"]) == (
            expected.opening,
            expected.total,
            expected.closing,
        )
        assert statement["opening_micros"] + statement["total_micros"] == statement["closing_micros"] == 42_500_000
        assert statement["is_final"] is True
        assert [(g["kind"], g["total"]) for g in statement["groups"]] == [
            ("topup", "50.000000"),
            ("hold_capture", "-7.500000"),
        ]
        usage = statement["groups"][1]["lines"]
        assert [(line["reference"], line["count"], line["amount"]) for line in usage] == [("lease 77", 1, "-7.500000")]

        running = api.billing.statement(m.current)
        assert running["is_final"] is False
        assert running["opening"] == statement["closing"] and running["closing"] == exact_usd(47_500_000)

        with pytest.raises(NotFound, match="your statements run from"):
            api.billing.statement(m.next)
        with pytest.raises(ValidationError, match="YYYY-MM"):
            api.billing.statement("2026-13")
        with pytest.raises(ValueError):
            api.billing.statement("")
    with Client(live_server.url, key(renter, "deploy"), timeout=20, retries=0) as deploy_only:
        with pytest.raises(PermissionDenied, match="'read' scope"):
            deploy_only.billing.statements()


def test_sphnctl_statements_list_and_get_with_exit_codes(run, renter, months):  # noqa: F811
    m = months
    reader = key(renter, "read")

    listed = run("statements", key=reader)  # the group's default: list
    assert listed.returncode == 0, listed.stderr
    assert [row["period"] for row in parsed(listed)] == [Months.slug(m.current), Months.slug(m.last)]
    assert parsed(run("statements", "list", key=reader)) == parsed(listed)
    table = run("statements", "list", key=reader, plain=True)
    assert table.returncode == 0, table.stderr
    last_row = next(line for line in table.stdout.splitlines() if Months.slug(m.last) in line)
    assert "50.000000" in last_row and "7.500000" in last_row and "42.500000" in last_row
    assert "running" in next(line for line in table.stdout.splitlines() if Months.slug(m.current) in line)

    got = run("statements", "get", Months.slug(m.last), key=reader)
    assert got.returncode == 0, got.stderr
    data = parsed(got)
    assert data["opening_micros"] + data["total_micros"] == data["closing_micros"] == 42_500_000
    shown = run("statements", "get", Months.slug(m.last), key=reader, plain=True)
    assert shown.returncode == 0, shown.stderr
    assert data["number"] in shown.stdout and "final" in shown.stdout
    assert "42.500000" in shown.stdout and "-7.500000" in shown.stdout and "lease 77" in shown.stdout
    assert f"/billing/statements/{Months.slug(m.last)}/" in shown.stdout

    malformed = run("statements", "get", "2026-13", key=reader)
    assert malformed.returncode == 2
    assert "YYYY-MM" in parsed(malformed)["error"]["message"]
    assert run("statements", "get", "", key=reader).returncode == 2
    future = run("statements", "get", Months.slug(m.next), key=reader)
    assert future.returncode == 3
    assert "No statement for" in parsed(future)["error"]["message"]
    refused = run("statements", key=key(renter, "deploy"))
    assert refused.returncode == 4 and "read" in parsed(refused)["error"]["message"]
