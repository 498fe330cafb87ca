from __future__ import annotations

from datetime import timedelta

import pytest

from billing.models import AccountKind, LedgerAccount
from core import clock
from core.db import update_by_id
from tests.factories import make_user


@pytest.mark.django_db
def test_update_by_id_sets_or_adds_each_rows_own_value_and_leaves_the_rest():
    accounts = [
        LedgerAccount.objects.create(kind=AccountKind.USER_AVAILABLE, user=make_user(), balance=balance)
        for balance in (100, 200, 300)
    ]
    big = 5 * 10**12  # beyond 32 bits: the values are bigint, not int4
    assert update_by_id(LedgerAccount, "balance", {accounts[0].id: -40, accounts[1].id: big}, add=True) == 2
    assert update_by_id(LedgerAccount, "balance", {accounts[2].id: 7}) == 1
    assert update_by_id(LedgerAccount, "balance", {}) == 0
    balances = [a.balance for a in LedgerAccount.objects.filter(id__in=[a.id for a in accounts]).order_by("id")]
    assert balances == [60, 200 + big, 7]


@pytest.mark.django_db
def test_update_by_id_writes_datetimes_through_the_field():
    from accounts.models import User

    first, second = make_user(), make_user()
    at = clock.now().replace(microsecond=123456)
    assert update_by_id(User, "last_login", {first.id: at, second.id: at - timedelta(days=1)}) == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.last_login, second.last_login) == (at, at - timedelta(days=1))
