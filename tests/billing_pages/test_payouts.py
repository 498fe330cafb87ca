"""billing.payouts: a provider may request at most their settled earnings not yet requested."""

from __future__ import annotations

import pytest

from billing.models import PayoutRequest
from billing.payouts import destination_clean, payout_request_create
from billing.services import account_get, transaction_post
from core.errors import ApplicationError
from tests.billing_pages.conftest import USD

pytestmark = pytest.mark.django_db
EVM = "0x52908400098527886E0F7030069857D2E4169EE7"
SOLANA = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"


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

    first = payout_request_create(user=provider, amount=6 * USD, destination=EVM)
    second = payout_request_create(user=provider, amount=4 * USD, destination=SOLANA)
    with pytest.raises(ApplicationError) as refused:
        payout_request_create(user=provider, amount=1, destination=EVM)

    assert (first.amount, second.amount) == (6 * USD, 4 * USD)
    assert refused.value.extra == {"field": "amount", "payable_micros": 0}
    assert refused.value.status == 409
    assert PayoutRequest.objects.count() == 2


def test_a_rejected_request_frees_its_amount(provider):
    settled(provider, 10 * USD)
    request = payout_request_create(user=provider, amount=10 * USD, destination=EVM)
    PayoutRequest.objects.filter(id=request.id).update(status=PayoutRequest.Status.REJECTED)

    assert payout_request_create(user=provider, amount=10 * USD, destination=EVM).amount == 10 * USD


def test_pending_earnings_cannot_be_requested(provider):
    account_get(kind="provider_pending", user=provider)
    with pytest.raises(ApplicationError, match="at most \\$0.00"):
        payout_request_create(user=provider, amount=USD, destination=EVM)


def test_only_providers_request_payouts(developer):
    with pytest.raises(ApplicationError) as refused:
        payout_request_create(user=developer, amount=USD, destination=EVM)
    assert refused.value.status == 403


@pytest.mark.parametrize("amount", [0, -1, True])
def test_the_amount_must_be_positive_micro_usd(provider, amount):
    settled(provider, 10 * USD)
    with pytest.raises(ApplicationError) as refused:
        payout_request_create(user=provider, amount=amount, destination=EVM)
    assert refused.value.extra["field"] == "amount"


@pytest.mark.parametrize("address", [EVM, EVM.lower(), SOLANA, "  " + SOLANA + " "])
def test_evm_and_solana_addresses_are_accepted(address):
    assert destination_clean(address) == address.strip()


@pytest.mark.parametrize(
    "address",
    [
        "",
        "0x" + "0" * 40,
        "0x" + "g" * 40,
        EVM[:-1],
        "0O" + SOLANA[2:],  # 0 and O are not base58
        "1" * 44,  # base58 but 44 zero bytes, not a 32-byte key
        SOLANA[:20],
    ],
)
def test_other_destinations_are_refused(address):
    with pytest.raises(ApplicationError) as refused:
        destination_clean(address)
    assert refused.value.extra == {"field": "destination"}
