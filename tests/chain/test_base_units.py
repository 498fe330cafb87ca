"""Base units are exact on every database (core.fields.BaseUnitsField): SQLite read decimals back
through a 15-digit float context, so a wei amount like 6,802,721,088,435,375 came back rounded and
the deposit was judged reorged at finality."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chain.models import Chain, Deposit
from chain.registry import registry_sync
from providers.models import ProviderProfile
from tests.factories import make_provider

pytestmark = pytest.mark.django_db

AMOUNTS = [0, 1, 6_802_721_088_435_375, 2**63 + 1, 10**21 + 7, 2**256 - 1]


def test_a_deposit_amount_of_up_to_78_digits_reads_back_exactly_and_orders_and_filters_as_a_number():
    registry_sync(devnet=True, keys=("base",))
    chain = Chain.objects.get(key="base")
    for n, amount in enumerate(AMOUNTS):
        Deposit.objects.create(
            chain=chain, tx_hash=f"0x{n:064x}", log_index=0, block_number=1, block_hash="0x1", payer="0xp",
            token_address="", amount=Decimal(amount), account_ref="",
        )  # fmt: skip
    assert [int(a) for a in Deposit.objects.order_by("amount").values_list("amount", flat=True)] == AMOUNTS
    assert Deposit.objects.get(amount=6_802_721_088_435_375).tx_hash == f"0x{2:064x}"
    assert Deposit.objects.filter(amount__gt=2**63).count() == 3
    assert Deposit.objects.filter(amount__lte=1).count() == 2


def test_staked_spon_in_base_units_is_exact():
    provider = make_provider()
    amount = Decimal(123_456_789_012_345_678_901_234)  # 123,456.78… SPON at 18 decimals
    ProviderProfile.objects.filter(id=provider.id).update(staked_spon=amount)
    assert ProviderProfile.objects.get(id=provider.id).staked_spon == amount
