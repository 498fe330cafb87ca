"""billing.payouts: a provider may request at most their settled earnings not yet requested, to
their linked payout address (paying on chain: tests/billing/test_payouts_onchain.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import WalletLink
from billing.models import PayoutRequest
from billing.payouts import payout_request_create
from billing.services import account_get, transaction_post
from chain.registry import ChainAddresses, registry_sync
from core.errors import ApplicationError
from tests.billing_pages.conftest import USD

pytestmark = pytest.mark.django_db
EVM = "0x52908400098527886E0F7030069857D2E4169EE7"


@pytest.fixture(autouse=True)
def base_chain(db):
    """Base enabled (no node: nothing is sent here)."""
    registry_sync(devnet=True, keys=("base",), addresses={"base": ChainAddresses(receiver="0x" + "11" * 20)})


def link_payout_address(user, address: str = EVM) -> WalletLink:
    return WalletLink.objects.create(
        user=user, address=address, purpose="payout", chain_id=8453, message="signed", signature="0x" + "00" * 65,
        linked_at=timezone.now(),
    )  # fmt: skip


def request(user, amount: int) -> PayoutRequest:
    return payout_request_create(user=user, amount=amount, chain="base", token="native")


@pytest.fixture
def provider(provider):
    link_payout_address(provider)
    return provider


def settled(provider, micros: int) -> None:
    transaction_post(
        kind="settlement",
        reference_type="settlement_run",
        reference_id="test",
        lines=[
            (account_get(kind="provider_settled", user=provider), micros),
            (account_get(kind="provider_pending", user=provider), -micros),
        ],
    )


def test_requests_up_to_the_settled_balance_then_refuses(provider):
    settled(provider, 10 * USD)

    first = request(provider, 6 * USD)
    second = request(provider, 4 * USD)
    with pytest.raises(ApplicationError) as refused:
        request(provider, USD)

    assert (first.amount, second.amount) == (6 * USD, 4 * USD)
    assert first.destination == EVM and first.chain.key == "base" and first.token.is_native
    assert refused.value.extra == {"field": "amount", "payable_micros": 0}
    assert refused.value.status == 409
    assert PayoutRequest.objects.count() == 2


@pytest.mark.parametrize("status", [PayoutRequest.Status.REJECTED, PayoutRequest.Status.FAILED])
def test_a_rejected_or_failed_request_frees_its_amount(provider, status):
    settled(provider, 10 * USD)
    first = request(provider, 10 * USD)
    PayoutRequest.objects.filter(id=first.id).update(status=status)

    assert request(provider, 10 * USD).amount == 10 * USD


def test_pending_earnings_cannot_be_requested(provider):
    account_get(kind="provider_pending", user=provider)
    with pytest.raises(ApplicationError, match="at most \\$0.00"):
        request(provider, USD)


def test_only_providers_request_payouts(developer):
    link_payout_address(developer)
    with pytest.raises(ApplicationError) as refused:
        request(developer, USD)
    assert refused.value.status == 403


@pytest.mark.parametrize("amount", [0, -1, True])
def test_the_amount_must_be_positive_micro_usd(provider, amount):
    settled(provider, 10 * USD)
    with pytest.raises(ApplicationError) as refused:
        request(provider, amount)
    assert refused.value.extra["field"] == "amount"


def test_the_destination_is_the_current_linked_payout_address(provider):
    settled(provider, 10 * USD)
    WalletLink.objects.filter(user=provider).update(revoked_at=timezone.now())
    newer = "0x" + "Ab" * 20
    link_payout_address(provider, newer)
    assert request(provider, USD).destination == newer


def test_no_linked_payout_address_is_refused_with_where_to_link_one(provider):
    settled(provider, 10 * USD)
    WalletLink.objects.filter(user=provider).update(revoked_at=timezone.now())
    with pytest.raises(ApplicationError, match="Link a payout address first.*/account/wallets/") as refused:
        request(provider, USD)
    assert refused.value.status == 409 and not PayoutRequest.objects.exists()


def test_a_stake_address_is_not_a_payout_address(provider):
    settled(provider, 10 * USD)
    WalletLink.objects.filter(user=provider).update(purpose="stake")
    with pytest.raises(ApplicationError, match="Link a payout address first"):
        request(provider, USD)


def test_below_the_minimum_is_refused(provider, settings):
    settings.PAYOUT_MIN_USD = Decimal("2.50")
    settled(provider, 10 * USD)
    with pytest.raises(ApplicationError, match="smallest payout is \\$2.50"):
        request(provider, 2_499_999)
    assert request(provider, 2_500_000).amount == 2_500_000
