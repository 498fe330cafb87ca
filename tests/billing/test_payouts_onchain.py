"""Provider payouts paid on chain (billing.payouts, issue 21 part 6), on anvil with the real sender.

A provider links a payout address by signing (accounts.wallets), asks for settled earnings on an
EVM chain in its native coin or $SPON; payouts above the threshold wait for an admin. The payout
pass records the transfer through chain.sender at the quoted rate (rounded down), the sender's pass
sends it, and the next payout pass marks it paid and posts the ledger once (settled earnings →
the payouts clearing account). Reverts fail the payout with the reason and release the earmark.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct

from accounts.wallets import wallet_link, wallet_nonce
from billing.models import AccountKind, LedgerAccount, LedgerTransaction, PayoutRequest, TransactionKind
from billing.payouts import (
    payout_request_create,
    payouts_outstanding,
    payouts_run,
    provider_earnings,
    token_amount_for,
    transfer_calldata,
)
from billing.services import account_get, transaction_post
from billing.tasks import run_payouts
from chain import sender
from chain.evm.anvil import DEV_ACCOUNTS
from chain.evm.client import ChainUnavailable
from chain.models import Chain, ChainKind, ChainTransaction, Rate, TxStatus
from chain.registry import ChainAddresses, registry_sync
from chain.sender import transactions_run
from core.errors import ApplicationError
from tests.billing.conftest import assert_ledger_consistent
from tests.chain_fixtures import TREASURY
from tests.factories import make_user

pytestmark = pytest.mark.django_db

USD = 1_000_000
KEY_ENV = "CHAIN_TEST_PAYOUT_KEY"
HOT_WALLET = DEV_ACCOUNTS[4]  # funded with native coin by anvil; given $SPON by the fixture
NO_SPON_WALLET = DEV_ACCOUNTS[6]  # native coin only: a $SPON transfer from it reverts
PAYEE = Account.from_key("0x" + "5a" * 32)  # a fresh address: its balances start at zero
SITE = "https://spheron.example"
HOT_SPON = 1_000_000 * 10**18
ETH_RATE, SPON_RATE = Decimal("3000"), Decimal("0.05")  # chain.registry.DEVNET_RATES


@pytest.fixture(autouse=True)
def _settings(settings, monkeypatch):
    settings.SITE_URL = SITE
    settings.DEBUG = True  # anvil's public keys are refused otherwise
    settings.PAYOUT_KEY_ENV = KEY_ENV
    settings.PAYOUT_APPROVAL_THRESHOLD_USD = Decimal("500")
    settings.PAYOUT_MIN_USD = Decimal("1")
    settings.CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS = 120
    monkeypatch.setenv(KEY_ENV, HOT_WALLET.private_key)


def _sync_base(*, spon: str, receiver: str = "0x" + "11" * 20, usdc: str = "") -> Chain:
    registry_sync(
        devnet=True,
        keys=("base",),
        addresses={
            "base": ChainAddresses(receiver=receiver, treasury=TREASURY.address, spon_token=spon, test_usdc=usdc)
        },
    )
    return Chain.objects.get(key="base")


@pytest.fixture
def base(anvil, settings):
    """Base on anvil with the contracts, its registry row (enabled, $SPON, demo rates dated now), and
    $SPON in the hot wallet."""
    node = anvil(chain_id=8453, deploy=True)
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "base": node.url}
    chain = _sync_base(
        spon=node.contracts["SponToken"], receiver=node.contracts["PaymentReceiver"], usdc=node.contracts["TestUSDC"]
    )
    spon = node.contract("SponToken")
    tx_hash = spon.functions.transfer(HOT_WALLET.address, HOT_SPON).transact({"from": TREASURY.address})
    assert node.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    return node, chain


@pytest.fixture
def rows_only(db):
    """Chain rows without a node (the request and form checks send nothing): Base with $SPON, an
    EVM chain without it, and Solana."""
    base = _sync_base(spon="0x" + "22" * 20)
    registry_sync(devnet=True, keys=("arbitrum",), addresses={"arbitrum": ChainAddresses(receiver="0x" + "33" * 20)})
    registry_sync(devnet=True, keys=("solana",), addresses={"solana": ChainAddresses(treasury="So1ana" + "1" * 38)})
    return base


@pytest.fixture
def provider():
    return make_user(email="host@example.test", is_provider=True, is_developer=False)


def settle(user, micros: int) -> None:
    """Settled earnings, as the settlement run posts them."""
    transaction_post(
        kind=TransactionKind.SETTLEMENT,
        reference_type="settlement_run",
        reference_id=f"test-{micros}",
        lines=[
            (account_get(kind=AccountKind.PROVIDER_SETTLED, user=user), micros),
            (account_get(kind=AccountKind.PROVIDER_PENDING, user=user), -micros),
        ],
    )


def link_payout_wallet(user, account=PAYEE) -> None:
    """The real Sign-In with Ethereum flow, signed locally."""
    _nonce, message = wallet_nonce(user=user, address=account.address, chain_id=8453, purpose="payout")
    signature = "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")
    wallet_link(user=user, message=message, signature=signature, purpose="payout")


@pytest.fixture
def earning(provider):
    """A provider with $100 settled earnings and a linked payout address."""
    settle(provider, 100 * USD)
    link_payout_wallet(provider)
    return provider


def settled_balance(user) -> int:
    return LedgerAccount.objects.get(kind=AccountKind.PROVIDER_SETTLED, user=user).balance


def clearing_balance(chain_key: str = "base") -> int:
    account = LedgerAccount.objects.filter(kind=AccountKind.CLEARING_PAYOUTS, key=chain_key).first()
    return account.balance if account else 0


def sender_pass(node) -> None:
    """The sender's beat pass, the block mined, and the next pass reading the receipt."""
    transactions_run()
    for tx in ChainTransaction.objects.filter(purpose="payout", status=TxStatus.SENT):
        node.w3.eth.wait_for_transaction_receipt(tx.tx_hash, timeout=10, poll_latency=0.05)
    transactions_run()


def sent_count(node, account=HOT_WALLET) -> int:
    return node.w3.eth.get_transaction_count(account.address, "pending")


def spon_balance(node, address: str) -> int:
    return node.contract("SponToken").functions.balanceOf(address).call()


def page_of(user) -> str:
    client = Client()
    client.force_login(user)
    response = client.get("/billing/earnings/")
    assert response.status_code == 200
    return response.content.decode()


def admin_client() -> Client:
    client = Client()
    client.force_login(make_user(email="admin@example.test", is_staff=True, is_superuser=True))
    return client


CHANGELIST = "/admin/billing/payoutrequest/"


# --- Paid on chain ------------------------------------------------------------------------------
def test_a_native_payout_is_paid_on_chain_and_posted_to_the_ledger_once(base, earning, settings):
    node, chain = base
    before = node.w3.eth.get_balance(PAYEE.address)

    payout = payout_request_create(user=earning, amount=10 * USD, chain="base", token="native")
    assert payout.status == PayoutRequest.Status.APPROVED and not payout.needs_approval  # below $500
    assert payout.destination == PAYEE.address and payout.wallet_link.purpose == "payout"
    assert provider_earnings(user=earning).payable == 90 * USD  # earmarked

    assert settings.CELERY_BEAT_SCHEDULE["run-payouts"]["task"] == run_payouts.name
    run_payouts()  # the beat task: records the transfer
    payout.refresh_from_db()
    tx = payout.chain_transaction
    expected = 10 * USD * 10**18 // (3000 * USD)  # $10 at $3,000 per ETH, rounded down
    assert payout.status == PayoutRequest.Status.SENDING and int(payout.token_amount) == expected
    assert (payout.usd_rate, tx.purpose, tx.reference) == (ETH_RATE, "payout", f"payout:{payout.pk}")
    assert (tx.to, int(tx.value), tx.data, tx.sender) == (PAYEE.address, expected, "0x", HOT_WALLET.address)
    assert payout.rate_at == Rate.objects.filter(symbol="ETH").latest("at").at
    assert settled_balance(earning) == 100 * USD  # nothing posted before the money leaves

    sender_pass(node)
    payouts_run()
    payout.refresh_from_db()
    tx.refresh_from_db()
    assert payout.status == PayoutRequest.Status.PAID and tx.status == TxStatus.MINED
    assert node.w3.eth.get_balance(PAYEE.address) == before + expected
    txn = payout.ledger_transaction
    assert (txn.kind, txn.reference_type, txn.reference_id) == (TransactionKind.PAYOUT, "payout", str(payout.pk))
    assert settled_balance(earning) == 90 * USD and clearing_balance() == 10 * USD
    assert provider_earnings(user=earning).payable == 90 * USD and payouts_outstanding(user=earning) == 0
    assert_ledger_consistent()

    # Every pass again: no second transaction, no second posting.
    for _ in range(2):
        payouts_run()
        sender_pass(node)
    assert ChainTransaction.objects.filter(purpose="payout").count() == 1
    assert LedgerTransaction.objects.filter(kind=TransactionKind.PAYOUT).count() == 1
    assert sent_count(node) == 1 and node.w3.eth.get_balance(PAYEE.address) == before + expected
    assert settled_balance(earning) == 90 * USD and clearing_balance() == 10 * USD

    page = page_of(earning)
    row = page.split(f'data-id="{payout.pk}"')[1].split("</tr>")[0]
    assert 'data-status="paid"' in page and "Paid" in row
    assert "0.003333333333333333 ETH" in row and "$3000 per ETH" in row
    assert tx.tx_hash in row  # the devnet has no explorer: the bare hash


def test_a_spon_payout_is_an_erc20_transfer_at_the_recorded_rate(base, earning):
    node, chain = base
    payout = payout_request_create(user=earning, amount=10 * USD, chain=chain, token="SPON")
    payouts_run()
    payout.refresh_from_db()
    # The rate moves after recording: the payout keeps the one it recorded.
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal("0.10"), at=timezone.now())
    expected = 200 * 10**18  # $10 at $0.05
    tx = payout.chain_transaction
    assert (payout.token_symbol, payout.usd_rate, int(payout.token_amount)) == ("SPON", SPON_RATE, expected)
    assert (tx.to, int(tx.value)) == (node.contracts["SponToken"], 0)
    assert tx.data == transfer_calldata(PAYEE.address, expected).lower()

    sender_pass(node)
    payouts_run()
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.PAID
    assert spon_balance(node, PAYEE.address) == expected
    assert spon_balance(node, HOT_WALLET.address) == HOT_SPON - expected
    assert settled_balance(earning) == 90 * USD and clearing_balance() == 10 * USD
    assert "200 SPON" in page_of(earning)
    assert_ledger_consistent()


def test_a_payout_above_the_threshold_waits_for_an_admin_then_is_paid(base, earning, settings):
    node, _chain = base
    settings.PAYOUT_APPROVAL_THRESHOLD_USD = Decimal("5")
    payout = payout_request_create(user=earning, amount=6 * USD, chain="base", token="native")
    assert payout.status == PayoutRequest.Status.REQUESTED and payout.needs_approval

    payouts_run()
    sender_pass(node)
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.REQUESTED and payout.chain_transaction is None
    assert not ChainTransaction.objects.exists()
    assert provider_earnings(user=earning).payable == 94 * USD  # still earmarked while it waits
    assert "Waiting for approval" in page_of(earning)

    admin = admin_client()
    listing = admin.get(CHANGELIST).content.decode()
    assert "Waiting for approval" in listing and PAYEE.address in listing
    response = admin.post(CHANGELIST, {"action": "approve", "_selected_action": [payout.pk]}, follow=True)
    assert f"Payout #{payout.pk} approved" in response.content.decode()
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.APPROVED and payout.approved_by.email == "admin@example.test"
    assert payout.approved_at is not None

    payouts_run()
    sender_pass(node)
    payouts_run()
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.PAID
    assert settled_balance(earning) == 94 * USD and clearing_balance() == 6 * USD
    # Approving it again is refused with a message, and changes nothing.
    again = admin.post(CHANGELIST, {"action": "approve", "_selected_action": [payout.pk]}, follow=True)
    assert "is paid, not waiting for approval" in [str(message) for message in again.context["messages"]][0]
    assert LedgerTransaction.objects.filter(kind=TransactionKind.PAYOUT).count() == 1


def test_a_rejected_payout_releases_its_earmark_and_posts_nothing(rows_only, earning, settings):
    settings.PAYOUT_APPROVAL_THRESHOLD_USD = Decimal("5")
    payout = payout_request_create(user=earning, amount=60 * USD, chain="base", token="native")
    assert provider_earnings(user=earning).payable == 40 * USD
    admin = admin_client()

    asked = admin.post(CHANGELIST, {"action": "reject", "_selected_action": [payout.pk]})
    assert asked.status_code == 200 and "Reject payouts" in asked.content.decode()
    no_reason = admin.post(CHANGELIST, {"action": "reject", "_selected_action": [payout.pk], "apply": "1"})
    assert "This field is required." in no_reason.content.decode()
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.REQUESTED

    admin.post(
        CHANGELIST,
        {"action": "reject", "_selected_action": [payout.pk], "apply": "1", "reason": "Unusual volume: call us"},
    )
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.REJECTED and "Unusual volume: call us" in payout.failure_reason
    assert provider_earnings(user=earning).payable == 100 * USD
    payouts_run()
    assert not ChainTransaction.objects.exists() and not LedgerTransaction.objects.filter(kind="payout").exists()
    page = page_of(earning)
    assert "Rejected" in page and "Unusual volume: call us" in page
    # The earmark is free again: the whole balance can be asked for.
    assert payout_request_create(user=earning, amount=100 * USD, chain="base", token="SPON").amount == 100 * USD


def test_a_crash_between_recording_and_sending_pays_once(base, earning, monkeypatch):
    node, _chain = base
    before = node.w3.eth.get_balance(PAYEE.address)
    payout = payout_request_create(user=earning, amount=3 * USD, chain="base", token="native")
    payouts_run()
    crashes = []

    def crash_once(self, raw_tx):
        crashes.append(raw_tx)
        raise ChainUnavailable("the worker died here")

    monkeypatch.setattr(sender.Rpc, "send_raw", crash_once)
    transactions_run()  # signed and stored, never broadcast
    payouts_run()  # a payout pass meanwhile: the payout stays sending, nothing new recorded
    assert len(crashes) == 1 and sent_count(node) == 0
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.SENDING
    signed_hash = payout.chain_transaction.tx_hash
    monkeypatch.undo()
    monkeypatch.setenv(KEY_ENV, HOT_WALLET.private_key)

    sender_pass(node)
    payouts_run()
    payouts_run()
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.PAID and payout.chain_transaction.tx_hash == signed_hash
    assert sent_count(node) == 1 and ChainTransaction.objects.count() == 1
    assert node.w3.eth.get_balance(PAYEE.address) == before + int(payout.token_amount)
    assert LedgerTransaction.objects.filter(kind=TransactionKind.PAYOUT).count() == 1
    assert settled_balance(earning) == 97 * USD


def test_a_reverted_payout_fails_with_the_reason_and_releases_the_earmark(base, earning, monkeypatch):
    node, _chain = base
    monkeypatch.setenv(KEY_ENV, NO_SPON_WALLET.private_key)  # a hot wallet without $SPON
    assert spon_balance(node, NO_SPON_WALLET.address) == 0
    payout = payout_request_create(user=earning, amount=10 * USD, chain="base", token="SPON")
    payouts_run()
    sender_pass(node)
    payouts_run()

    payout.refresh_from_db()
    tx = payout.chain_transaction
    assert tx.status == TxStatus.FAILED and "InsufficientBalance" in tx.revert_reason
    assert payout.status == PayoutRequest.Status.FAILED and tx.revert_reason in payout.failure_reason
    assert spon_balance(node, PAYEE.address) == 0 and sent_count(node, NO_SPON_WALLET) == 0
    assert not LedgerTransaction.objects.filter(kind=TransactionKind.PAYOUT).exists()
    assert settled_balance(earning) == 100 * USD and provider_earnings(user=earning).payable == 100 * USD
    page = page_of(earning)
    assert "Failed" in page and "InsufficientBalance" in page
    payouts_run()  # a failed payout is not tried again
    assert ChainTransaction.objects.count() == 1
    assert_ledger_consistent()


# --- Waiting --------------------------------------------------------------------------------------
def test_without_the_hot_wallet_key_a_payout_waits_and_says_why(rows_only, earning, monkeypatch, caplog):
    monkeypatch.delenv(KEY_ENV)
    payout = payout_request_create(user=earning, amount=5 * USD, chain="base", token="native")
    payouts_run()
    payouts_run()
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.APPROVED and KEY_ENV in payout.waiting_reason
    assert not ChainTransaction.objects.exists()
    assert KEY_ENV in page_of(earning)


def test_a_stale_rate_makes_a_payout_wait(rows_only, earning, settings):
    Rate.objects.filter(symbol="ETH").update(
        at=timezone.now() - timedelta(seconds=settings.CHAIN_RATE_MAX_AGE_SECONDS + 60)
    )
    payout = payout_request_create(user=earning, amount=5 * USD, chain="base", token="native")
    payouts_run()
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.APPROVED and payout.token_amount is None
    assert "ETH rate" in payout.waiting_reason and not ChainTransaction.objects.exists()


# --- Requests -------------------------------------------------------------------------------------
def test_open_payouts_earmark_settled_earnings(rows_only, earning, settings):
    settings.PAYOUT_APPROVAL_THRESHOLD_USD = Decimal("50")
    payout_request_create(user=earning, amount=60 * USD, chain="base", token="native")  # waits
    payout_request_create(user=earning, amount=30 * USD, chain="base", token="native")  # approved
    with pytest.raises(ApplicationError) as refused:
        payout_request_create(user=earning, amount=10 * USD + 1, chain="base", token="native")
    assert refused.value.extra == {"field": "amount", "payable_micros": 10 * USD} and refused.value.status == 409


def test_the_token_amount_is_rounded_down():
    assert token_amount_for(USD, decimals=18, usd_per_unit=Decimal("3")) == 333_333_333_333_333_333
    assert token_amount_for(1, decimals=6, usd_per_unit=Decimal("1.000000000001")) == 0
    huge = 10**9 * USD  # past 28 digits in base units: still exact
    assert token_amount_for(huge, decimals=18, usd_per_unit=Decimal("0.05")) == 2 * 10**10 * 10**18


@pytest.fixture
def provider_client(earning) -> Client:
    client = Client()
    client.force_login(earning)
    return client


def test_a_payout_is_requested_from_the_earnings_page(rows_only, provider_client, earning):
    page = provider_client.get("/billing/earnings/").content.decode()
    assert PAYEE.address in page and '<option value="base">Base (ETH)</option>' in page
    assert 'value="solana"' not in page and "$SPON (on Base)" in page

    response = provider_client.post("/billing/earnings/", {"amount": "12.50", "chain": "base", "token": "SPON"})
    assert response.status_code == 302
    payout = PayoutRequest.objects.get(user=earning)
    assert (payout.amount, payout.chain.key, payout.token_symbol, payout.destination) == (
        12_500_000,
        "base",
        "SPON",
        PAYEE.address,
    )
    page = provider_client.get("/billing/earnings/").content.decode()
    assert "Approved, sending soon" in page and "$12.50 already requested" in page


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"amount": "100.01", "chain": "base", "token": "native"}, "You can request at most $100.00"),
        ({"amount": "0.99", "chain": "base", "token": "native"}, "The smallest payout is $1.00"),
        ({"amount": "0.00", "chain": "base", "token": "native"}, "above zero"),
        ({"amount": "1.234", "chain": "base", "token": "native"}, "at most two decimal places"),
        ({"amount": "", "chain": "base", "token": "native"}, "This field is required."),
        ({"amount": "5", "chain": "solana", "token": "native"}, "payouts are paid on enabled EVM chains"),
        ({"amount": "5", "chain": "atlantis", "token": "native"}, "payouts are paid on enabled EVM chains"),
        ({"amount": "5", "chain": "", "token": "native"}, "This field is required."),
        ({"amount": "5", "chain": "base", "token": "USDC"}, "native coin or $SPON"),
        ({"amount": "5", "chain": "base", "token": "DOGE\x00"}, "native coin or $SPON"),
        ({"amount": "5", "chain": "arbitrum", "token": "SPON"}, "$SPON is not on Arbitrum One"),
    ],
)
def test_bad_payout_input_is_a_message_not_an_error(rows_only, provider_client, form, message):
    response = provider_client.post("/billing/earnings/", form)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not PayoutRequest.objects.exists()


def test_without_a_linked_payout_address_the_page_says_where_to_link_one(rows_only, provider):
    settle(provider, 100 * USD)
    client = Client()
    client.force_login(provider)
    page = client.get("/billing/earnings/").content.decode()
    assert 'data-testid="link-payout-wallet"' in page and f'href="{reverse("account_wallets")}"' in page
    assert '<button type="submit" disabled aria-describedby="payout-no-wallet">' in page

    response = client.post("/billing/earnings/", {"amount": "5", "chain": "base", "token": "native"})
    assert response.status_code == 200 and "Link a payout address first" in response.content.decode()
    assert not PayoutRequest.objects.exists()


def test_the_service_refuses_a_non_evm_chain_and_an_unknown_token(rows_only, earning):
    with pytest.raises(ApplicationError, match="EVM chains; Solana is not one"):
        payout_request_create(user=earning, amount=5 * USD, chain="solana", token="native")
    with pytest.raises(ApplicationError, match="native coin\\) or \\$SPON"):
        payout_request_create(user=earning, amount=5 * USD, chain="base", token="USDC")
    assert Chain.objects.get(key="solana").kind == ChainKind.SOLANA
    assert not PayoutRequest.objects.exists()


def test_a_request_from_before_payouts_on_chain_still_shows_and_is_never_sent(rows_only, earning):
    old = PayoutRequest.objects.create(user=earning, amount=2 * USD, destination="0x" + "ab" * 20)
    payouts_run()
    old.refresh_from_db()
    assert old.status == PayoutRequest.Status.REQUESTED and not ChainTransaction.objects.exists()
    row = page_of(earning).split(f'data-id="{old.pk}"')[1].split("</tr>")[0]
    assert "Requested" in row and "0x" + "ab" * 20 in row
    admin = admin_client()
    response = admin.post(CHANGELIST, {"action": "approve", "_selected_action": [old.pk]}, follow=True)
    assert "requested before payouts were paid on chain" in response.content.decode()
    old.refresh_from_db()
    assert old.status == PayoutRequest.Status.REQUESTED


@pytest.mark.parametrize("chain", ["base\x00", "", "B" * 500, "no such chain"])
def test_the_service_refuses_a_chain_key_it_does_not_know(rows_only, earning, chain):
    with pytest.raises(ApplicationError) as refused:
        payout_request_create(user=earning, amount=5 * USD, chain=chain, token="native")
    assert refused.value.extra == {"field": "chain"}
