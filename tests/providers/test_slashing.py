"""Slashing on chain (providers.slashing) on anvil: a slash the platform decides is recorded, sent by
the slasher key through chain.sender, mirrored from its Slashed event by the stake indexer and only
then applied, once; a retry, a crash before the broadcast or a missing key never slash twice; a
reverted slash is failed with its reason; a provider without a linked stake address is slashed off
chain at once; the provider sees each slash on the stake page."""

from __future__ import annotations

import logging

import pytest
from django.utils import timezone
from web3 import Web3

from accounts.models import WalletLink
from chain import sender
from chain.evm.anvil import DEV_ACCOUNTS
from chain.evm.client import ChainUnavailable
from chain.models import Chain, ChainKind, ChainTransaction, TxStatus
from chain.sender import transactions_run
from providers.models import Slash, SlashStatus, StakeEvent
from providers.services import stake_record
from providers.slashing import reason_hash_of, slash_decide, slashes_run
from providers.stake_chain import stake_chain_index
from providers.tasks import run_slashes
from tests.contracts.helpers import call
from tests.factories import make_node, make_provider

ADMIN, TREASURY, STAKER, STRANGER = DEV_ACCOUNTS[:4]  # the deployer (ADMIN) holds SLASHER_ROLE
SPON = 10**18
FINALITY = 3
KEY_ENV = "CHAIN_TEST_SLASHER_KEY"
EXPLORER = "https://explorer.example/tx/{tx}"


@pytest.fixture
def home(anvil, db, settings, monkeypatch):
    node = anvil(chain_id=8453, deploy=True)
    chain, _ = Chain.objects.update_or_create(
        key="base",
        defaults={
            "chain_id": 8453, "name": "Base", "kind": ChainKind.EVM, "native_symbol": "ETH", "native_decimals": 18,
            "finality": FINALITY, "block_time_ms": 2000, "enabled": True, "explorer_tx_url": EXPLORER,
            "spon_token_address": node.contracts["SponToken"],
        },
    )  # fmt: skip
    settings.DEBUG = True  # anvil's keys are refused otherwise
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "base": node.url}
    settings.STAKING_CHAIN_KEY = "base"
    settings.STAKING_CONTRACT_ADDRESS = node.contracts["SponStaking"]
    settings.MIN_STAKE_PER_GPU_SPON = 200
    settings.SLASHER_KEY_ENV = KEY_ENV
    settings.CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS = 120
    monkeypatch.setenv(KEY_ENV, ADMIN.private_key)
    return node, chain


@pytest.fixture
def staked(home):
    """A provider with one 2-GPU agent node, STAKER linked as its stake address, 400 $SPON staked on
    chain and mirrored."""
    node, _chain = home
    provider = make_provider()
    machine = make_node(provider=provider, gpu_count=2, is_simulated=False, stake_covered=False)
    WalletLink.objects.create(
        user=provider.user, address=STAKER.address, purpose="stake", chain_id=8453, message="signed",
        signature="0x" + "00" * 65, linked_at=timezone.now(),
    )  # fmt: skip
    spon, staking = node.contract("SponToken"), node.contract("SponStaking")
    call(node.w3, TREASURY, spon.functions.transfer(STAKER.address, 400 * SPON))
    call(node.w3, STAKER, spon.functions.approve(node.contracts["SponStaking"], 400 * SPON))
    call(node.w3, STAKER, staking.functions.stake(400 * SPON))
    _finalize(node)
    stake_chain_index()
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 400 * SPON
    return provider, machine


def _finalize(node):
    node.rpc("anvil_mine", [hex(FINALITY)])


def _settle(node) -> None:
    """The beat passes in order: ours records, the sender sends, the block is mined, the sender reads
    the receipt, the block becomes final, the indexer mirrors the event, ours applies it."""
    slashes_run()
    transactions_run()
    for tx in ChainTransaction.objects.filter(purpose="slash", status=TxStatus.SENT):
        node.w3.eth.wait_for_transaction_receipt(tx.tx_hash, timeout=10, poll_latency=0.05)
    transactions_run()
    _finalize(node)
    stake_chain_index()
    slashes_run()


def _active(node) -> int:
    return node.contract("SponStaking").functions.activeStake(STAKER.address).call()


def _decide(provider, amount="150", reference="test:1", **kwargs) -> Slash:
    kwargs.setdefault("reason", "Lease 42 ended by the node's failure")
    return slash_decide(provider=provider, amount_spon=amount, reference=reference, **kwargs)


def test_a_decided_slash_is_sent_by_the_slasher_key_and_applied_once_from_its_event(home, staked, settings):
    node, _chain = home
    provider, machine = staked
    slash = _decide(provider, evidence_type="lease", evidence_id="42")
    assert (slash.status, slash.address, slash.chain_tx_id) == (SlashStatus.DECIDED, STAKER.address, None)
    assert slash.reason_hash == reason_hash_of(reason=slash.reason, reference="test:1")
    assert not ChainTransaction.objects.exists()  # recorded first, nothing sent in the decision

    slashes_run()
    slash.refresh_from_db()
    tx = slash.chain_tx
    assert slash.status == SlashStatus.SENDING
    assert (tx.purpose, tx.reference, tx.status, tx.sender) == ("slash", f"slash:{slash.id}", "recorded", ADMIN.address)

    transactions_run()
    tx.refresh_from_db()
    node.w3.eth.wait_for_transaction_receipt(tx.tx_hash, timeout=10, poll_latency=0.05)
    transactions_run()
    tx.refresh_from_db()
    assert tx.status == TxStatus.MINED
    assert _active(node) == 250 * SPON
    slashes_run()
    slash.refresh_from_db()
    assert slash.status == SlashStatus.SENDING  # mined, but the event is not final yet
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 400 * SPON

    _finalize(node)
    assert stake_chain_index().recorded == 1
    assert settings.CELERY_BEAT_SCHEDULE["run-slashes"]["task"] == run_slashes.name
    assert run_slashes()["applied"] == 1  # the beat task: slashes_run
    slash.refresh_from_db()
    event = StakeEvent.objects.get(kind="slash")
    assert (slash.status, int(slash.amount_slashed), slash.stake_event_id) == (
        SlashStatus.APPLIED,
        150 * SPON,
        event.id,
    )
    assert event.tx_hash == tx.tx_hash and event.reason == f"reason hash {slash.reason_hash}"
    provider.refresh_from_db()
    machine.refresh_from_db()
    assert (int(provider.staked_spon), provider.slash_count) == (250 * SPON, 1)
    assert not machine.stake_covered  # 2 GPUs × 200 $SPON > 250

    # Every pass again, and the same decision again: nothing more is sent or counted.
    again = _decide(provider, amount="999", reason="another try")
    _settle(node)
    stake_chain_index()
    assert again.pk == slash.pk and Slash.objects.count() == 1
    assert ChainTransaction.objects.filter(purpose="slash").count() == 1
    assert StakeEvent.objects.filter(kind="slash").count() == 1
    provider.refresh_from_db()
    assert (int(provider.staked_spon), provider.slash_count) == (250 * SPON, 1)
    assert _active(node) == 250 * SPON
    assert node.w3.eth.get_transaction_count(ADMIN.address) == tx.nonce + 1


def test_the_contract_takes_at_most_the_stake_and_the_slash_says_how_much(home, staked):
    node, _chain = home
    provider, _machine = staked
    slash = _decide(provider, amount="1000")
    _settle(node)
    slash.refresh_from_db()
    assert (slash.status, int(slash.amount), int(slash.amount_slashed)) == ("applied", 1000 * SPON, 400 * SPON)
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 0 and _active(node) == 0


def test_without_the_slasher_key_a_slash_waits_then_goes_once_the_key_is_set(home, staked, monkeypatch, caplog):
    node, _chain = home
    provider, _machine = staked
    monkeypatch.delenv(KEY_ENV)
    slash = _decide(provider)
    with caplog.at_level(logging.WARNING, logger="providers.slashing"):
        first, second = slashes_run(), slashes_run()
    assert first.waiting == second.waiting == f"{KEY_ENV} is not set"
    assert [r.getMessage() for r in caplog.records].count(f"slashes: decided slashes wait: {KEY_ENV} is not set") == 1
    slash.refresh_from_db()
    assert slash.status == SlashStatus.DECIDED and not ChainTransaction.objects.exists()

    monkeypatch.setenv(KEY_ENV, ADMIN.private_key)
    _settle(node)
    slash.refresh_from_db()
    assert slash.status == SlashStatus.APPLIED and int(slash.amount_slashed) == 150 * SPON
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 250 * SPON


def test_a_slash_the_contract_refuses_is_failed_with_the_reason_and_the_stake_kept(home, staked, monkeypatch):
    node, _chain = home
    provider, _machine = staked
    monkeypatch.setenv(KEY_ENV, STRANGER.private_key)  # a key without SLASHER_ROLE
    slash = _decide(provider)
    _settle(node)
    slash.refresh_from_db()
    tx = slash.chain_tx
    assert tx.status == TxStatus.FAILED
    assert slash.status == SlashStatus.FAILED
    assert slash.failure_reason.startswith(f"AccessControlUnauthorizedAccount({STRANGER.address.lower()}, 0x")
    assert slash.failure_reason == tx.revert_reason
    provider.refresh_from_db()
    assert (int(provider.staked_spon), provider.slash_count) == (400 * SPON, 0)
    assert _active(node) == 400 * SPON
    assert not StakeEvent.objects.filter(kind="slash").exists()
    slashes_run()  # settled: stays failed
    slash.refresh_from_db()
    assert slash.status == SlashStatus.FAILED


def test_a_crash_between_recording_and_sending_sends_the_slash_once(home, staked, monkeypatch):
    node, _chain = home
    provider, _machine = staked
    slash = _decide(provider)
    slashes_run()

    def crash(self, raw_tx):
        raise ChainUnavailable("the worker died here")

    monkeypatch.setattr(sender.Rpc, "send_raw", crash)
    transactions_run()  # signed and stored, the broadcast never happened
    slash.refresh_from_db()
    tx = slash.chain_tx
    signed = tx.tx_hash
    assert tx.status == TxStatus.RECORDED and signed
    assert node.w3.eth.get_transaction_count(ADMIN.address, "pending") == tx.nonce

    monkeypatch.undo()
    monkeypatch.setenv(KEY_ENV, ADMIN.private_key)
    _settle(node)
    slash.refresh_from_db()
    tx.refresh_from_db()
    assert (tx.tx_hash, tx.attempts, tx.status) == (signed, 1, TxStatus.MINED)
    assert slash.status == SlashStatus.APPLIED
    assert node.w3.eth.get_transaction_count(ADMIN.address) == tx.nonce + 1
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 250 * SPON and _active(node) == 250 * SPON


def test_a_slash_of_an_address_unlinked_meanwhile_is_applied_with_a_note_and_counted_nowhere(home, staked):
    node, _chain = home
    provider, _machine = staked
    slash = _decide(provider)
    WalletLink.objects.filter(address=STAKER.address).update(revoked_at=timezone.now())  # the provider re-links
    _settle(node)
    slash.refresh_from_db()
    assert slash.status == SlashStatus.APPLIED and slash.amount_slashed is None and slash.stake_event is None
    assert slash.failure_reason.startswith(f"Mined, but its Slashed event was not mirrored: {STAKER.address}")
    assert _active(node) == 250 * SPON
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 400 * SPON  # the indexer ignores an unlinked address's events


def test_the_stake_page_shows_the_slash_with_its_reason_and_transaction(home, staked, client):
    node, _chain = home
    provider, _machine = staked
    slash = _decide(provider, evidence_type="lease", evidence_id="42")
    client.force_login(provider.user)
    page = client.get("/provider/stake/").content.decode()
    assert 'data-status="decided"' in page and "waiting to be sent" in page

    _settle(node)
    slash.refresh_from_db()
    tx_hash = slash.chain_tx.tx_hash
    page = client.get("/provider/stake/").content.decode()
    assert 'data-testid="stake-slash" data-status="applied"' in page
    assert "Lease 42 ended by the node&#x27;s failure" in page
    assert f'<a href="{EXPLORER.replace("{tx}", tx_hash)}" rel="noopener">{tx_hash}</a>' in page
    assert "lease 42" in page and "−150" in page


# --- Off chain ----------------------------------------------------------------------------------


def test_a_provider_without_a_stake_address_is_slashed_off_chain_at_once(db, settings):
    settings.STAKING_CONTRACT_ADDRESS = ""
    provider = make_provider()
    stake_record(provider=provider, kind="stake", amount="500", reason="agreement")
    slash = _decide(provider, amount="100")
    assert slash.status == SlashStatus.OFF_CHAIN and slash.chain_tx_id is None and slash.address == ""
    event = slash.stake_event
    assert (event.kind, event.source, int(event.amount), event.reason) == ("slash", "admin", 100 * SPON, slash.reason)
    provider.refresh_from_db()
    assert (int(provider.staked_spon), provider.slash_count) == (400 * SPON, 1)

    assert _decide(provider, amount="100").pk == slash.pk  # a retry: the same slash
    slashes_run()
    provider.refresh_from_db()
    assert (int(provider.staked_spon), provider.slash_count) == (400 * SPON, 1)
    assert not ChainTransaction.objects.exists()

    capped = _decide(provider, amount="1000", reference="test:2")
    assert int(capped.amount_slashed) == 400 * SPON
    nothing = _decide(provider, amount="1", reference="test:3")
    assert nothing.status == SlashStatus.FAILED and nothing.failure_reason == "The provider has no stake to slash."
    provider.refresh_from_db()
    assert (int(provider.staked_spon), provider.slash_count) == (0, 2)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": "0"}, "The amount must be above zero."),
        ({"amount": "ten"}, "Enter an amount of $SPON, e.g. 200."),
        ({"reason": "  "}, "Enter the reason for the slash."),
        ({"reason": "x" * 201}, "The reason has at most 200 characters."),
        ({"reference": "bad reference"}, "The slash needs a reference: letters, digits and :._- only."),
    ],
)
def test_bad_decisions_are_refused_with_a_message(db, fields, message):
    from core.errors import ApplicationError

    provider = make_provider()
    with pytest.raises(ApplicationError) as refused:
        _decide(provider, **fields)
    assert refused.value.message == message
    assert not Slash.objects.exists()


def test_the_reason_hash_is_keccak_of_the_compact_sorted_json():
    expected = Web3.keccak(text='{"reason":"Nœud en panne","reference":"lease-failure:7"}').hex()
    assert reason_hash_of(reason="Nœud en panne", reference="lease-failure:7") == "0x" + expected.removeprefix("0x")


def test_an_admin_slash_of_a_linked_provider_goes_on_chain(home, staked, client):
    import re

    from tests.factories import make_user

    node, _chain = home
    provider, _machine = staked
    client.force_login(make_user(is_staff=True, is_superuser=True))
    page = client.get(f"/admin/providers/slash/add/?provider={provider.id}").content.decode()
    reference = re.search(r'name="decision_reference" value="(admin:[0-9a-f-]{36})"', page).group(1)
    form = {"provider": provider.id, "amount_spon": "40", "reason": "Fake GPUs", "decision_reference": reference}
    assert client.post("/admin/providers/slash/add/", form).status_code == 302
    slash = Slash.objects.get()
    assert (slash.status, slash.address, slash.reference) == (SlashStatus.DECIDED, STAKER.address, reference)
    _settle(node)
    slash.refresh_from_db()
    assert slash.status == SlashStatus.APPLIED and int(slash.amount_slashed) == 40 * SPON
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 360 * SPON
    listing = client.get("/admin/providers/slash/").content.decode()
    assert f'href="{EXPLORER.replace("{tx}", slash.chain_tx.tx_hash)}"' in listing
