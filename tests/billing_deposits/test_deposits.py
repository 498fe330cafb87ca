"""Crediting, the admin queue, rates, references and the API, with a fake chain reader (no node)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from billing.deposits import deposit_assign, deposit_mark_refunded, deposits_credit_final
from billing.models import LedgerTransaction
from billing.selectors import user_balances
from chain import rates
from chain.evm import client as evm_client
from chain.evm.client import TxDeposits
from chain.evm.events import DepositLog
from chain.keys import DevKeyRefused, key_check
from chain.models import Chain, Deposit, DepositStatus, Rate
from chain.registry import CHAIN_KEYS, ChainAddresses, registry_sync
from chain.services import chain_watch, reference_for
from core.errors import ApplicationError
from tests.factories import make_user

RECEIVER = "0x" + "11" * 20


class FakeReader:
    def __init__(self) -> None:
        self.height = 0
        self.logs: list[DepositLog] = []

    def head(self) -> int:
        return self.height

    def deposit_logs(self, receiver, from_block, to_block):
        return [log for log in self.logs if from_block <= log.block_number <= to_block]

    def tx_deposits(self, tx_hash, receiver):
        logs = [log for log in self.logs if log.tx_hash == tx_hash]
        if not logs:
            return None
        return TxDeposits(tx_hash, logs[0].block_number, logs[0].block_hash, True, logs)

    def pay(self, ref: str, wei: int, *, token: str = "") -> DepositLog:
        self.height += 1
        log = DepositLog(
            tx_hash="0x" + f"{len(self.logs) + 1:064x}",
            log_index=0,
            block_number=self.height,
            block_hash="0x" + f"{self.height:064x}",
            emitter=RECEIVER,
            account_ref=ref,
            payer="0x" + "22" * 20,
            token=token,
            amount=wei,
        )
        self.logs.append(log)
        return log


@pytest.fixture
def chain(db, settings, monkeypatch):
    settings.CHAIN_DEVNET_FINALITY = 3
    registry_sync(devnet=True, keys=("arbitrum",), addresses={"arbitrum": ChainAddresses(receiver=RECEIVER)})
    reader = FakeReader()
    monkeypatch.setattr(evm_client, "client_for", lambda chain: reader)
    return reader


@pytest.fixture
def renter(db):
    return make_user(email="renter@example.test")


def test_registry_writes_eight_chains_with_real_ids_and_keeps_admin_edits(db):
    registry_sync(devnet=False)
    assert tuple(Chain.objects.values_list("key", flat=True)) == CHAIN_KEYS
    ids = dict(Chain.objects.values_list("key", "chain_id"))
    assert ids == {"zksync": 324, "arbitrum": 42161, "optimism": 10, "bnb": 56, "avalanche": 43114,
                   "filecoin": 314, "base": 8453, "solana": None}  # fmt: skip
    assert Chain.objects.get(key="bnb").finality == 15
    assert not Chain.objects.filter(enabled=True).exists()  # no receiver yet
    Chain.objects.filter(key="bnb").update(finality=96)
    registry_sync(devnet=False)
    assert Chain.objects.get(key="bnb").finality == 96
    assert not Rate.objects.exists()  # production seeds no prices


def test_reference_is_random_unique_and_stable(renter):
    other = make_user(email="other@example.test")
    ref = reference_for(renter)
    assert reference_for(renter) == ref
    assert len(ref.ref) == 66 and ref.ref.startswith("0x")
    assert reference_for(other).ref != ref.ref


def test_stale_rate_gives_no_quote_but_a_reason(db, settings):
    settings.CHAIN_RATE_MAX_AGE_SECONDS = 600
    Rate.objects.create(symbol="ETH", usd_per_unit=3000, at=timezone.now() - timedelta(hours=1))
    result = rates.quote_or_reason("ETH")
    assert result.quote is None and "older than 10 minutes" in result.reason
    assert rates.quote("BTC") is None


def test_test_keys_are_refused_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(DevKeyRefused):
        key_check("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", name="DEPLOYER_KEY")
    settings.DEBUG = True
    assert key_check("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")


def test_final_deposit_credits_once_at_the_rate_of_first_sight(chain, renter):
    chain.pay(reference_for(renter).ref, 10**16)  # 0.01 ETH at $3,000
    chain_watch(chain_key="arbitrum")
    Rate.objects.create(symbol="ETH", usd_per_unit=1, at=timezone.now())  # the price moves after
    chain.height += 2
    chain_watch(chain_key="arbitrum")
    deposits_credit_final()
    deposit = Deposit.objects.get()
    assert deposit.status == DepositStatus.CREDITED
    assert user_balances(user=renter).available == 30_000_000 - 600_000
    assert LedgerTransaction.objects.filter(id=deposit.credited_txn_id).exists()


def test_unknown_reference_waits_in_the_queue_until_an_admin_assigns_it(chain, renter):
    admin_user = make_user(email="admin@example.test", is_staff=True)
    chain.pay("0x" + "ab" * 32, 10**16)
    chain.height += 2
    chain_watch(chain_key="arbitrum")
    deposit = Deposit.objects.get()
    assert deposit.status == DepositStatus.UNMATCHED and deposit.final_at is not None
    txn = deposit_assign(deposit=deposit, user=renter, by=admin_user, note="ticket 42")
    assert "admin@example.test" in txn.memo and txn.created_by == admin_user
    assert user_balances(user=renter).available == 29_400_000
    with pytest.raises(ApplicationError):
        deposit_assign(deposit=deposit, user=renter, by=admin_user)


def test_below_minimum_can_be_marked_refunded(chain, renter):
    admin_user = make_user(email="admin@example.test", is_staff=True)
    chain.pay(reference_for(renter).ref, 10**14)  # $0.30
    chain_watch(chain_key="arbitrum")
    deposit = Deposit.objects.get()
    assert deposit.status == DepositStatus.BELOW_MINIMUM
    deposit_mark_refunded(deposit=deposit, by=admin_user, note="sent back in 0xabc")
    deposit.refresh_from_db()
    assert deposit.status == DepositStatus.REFUNDED
    assert user_balances(user=renter).available == 0


def _api(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_api_chains_instructions_and_deposits(chain, renter, settings):
    client = _api(renter)
    chains = client.get("/api/v1/chains").json()
    assert [c["key"] for c in chains] == ["arbitrum"] and chains[0]["chain_id"] == 42161
    assert chains[0]["tokens"][0] == {"symbol": "ETH", "address": "", "decimals": 18, "fee_bps": 200}
    instructions = client.get("/api/v1/billing/deposits/instructions").json()
    assert instructions["reference"] == reference_for(renter).ref
    assert instructions["chains"][0]["tokens"][0]["rate_usd"] == "3000"
    settings.CHAIN_RATE_MAX_AGE_SECONDS = 10
    Rate.objects.update(at=timezone.now() - timedelta(hours=1))
    stale = client.get("/api/v1/billing/deposits/instructions").json()["chains"][0]["tokens"][0]
    assert stale["rate_usd"] is None and "older than" in stale["no_quote_reason"]

    for _ in range(3):
        chain.pay(reference_for(renter).ref, 10**16)
    chain_watch(chain_key="arbitrum")
    page = client.get("/api/v1/billing/deposits?limit=2").json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = client.get(f"/api/v1/billing/deposits?limit=2&cursor={page['next_cursor']}").json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert client.get("/api/v1/billing/deposits?cursor=nonsense").status_code == 422
    assert Client().get("/api/v1/billing/deposits").status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"chain": "dogecoin", "tx_hash": "0x" + "ab" * 32}, 404),
        ({"chain": "arbitrum", "tx_hash": "0x1234"}, 422),
        ({"chain": "arbitrum", "tx_hash": "0x" + "cd" * 32}, 404),
        ({"chain": 5, "tx_hash": "0x"}, 422),
        ({"chain": "arbitrum"}, 422),
        ({"chain": "arbitrum", "tx_hash": "0x\x00"}, 422),
    ],
)
def test_api_check_refuses_bad_input_with_4xx(chain, renter, body, status):
    response = _api(renter).post("/api/v1/billing/deposits/check", body, content_type="application/json")
    assert response.status_code == status, response.content
    assert response.json()["message"]


def test_api_check_credits_a_final_pasted_deposit(chain, renter):
    log = chain.pay(reference_for(renter).ref, 10**16)
    chain.height += 2
    response = _api(renter).post(
        "/api/v1/billing/deposits/check", {"chain": "arbitrum", "tx_hash": log.tx_hash}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["items"][0]["status"] == "credited" and response.json()["yours"] == [True]
    assert user_balances(user=renter).available == 29_400_000


def test_admin_assigns_a_queued_deposit_naming_the_admin(chain, renter):
    from django.contrib.auth.models import Permission

    admin_user = make_user(email="ops@example.test", is_staff=True)
    admin_user.user_permissions.add(
        Permission.objects.get(codename="add_ledgertransaction"), Permission.objects.get(codename="view_deposit")
    )
    chain.pay("0x" + "cd" * 32, 10**16)
    chain.height += 2
    chain_watch(chain_key="arbitrum")
    deposit = Deposit.objects.get()
    client = _api(admin_user)
    response = client.post(
        "/admin/chain/deposit/",
        {"action": "assign", "_selected_action": [deposit.id], "apply": "1", "email": renter.email, "reason": "e-mail"},
    )
    assert response.status_code == 302, response.content[:500]
    deposit.refresh_from_db()
    assert deposit.status == DepositStatus.CREDITED and deposit.resolved_by == admin_user
    assert "ops@example.test" in LedgerTransaction.objects.get(id=deposit.credited_txn_id).memo
