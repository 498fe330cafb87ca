"""The transaction sender (chain.sender) on anvil: record before send, the app's nonce, reconcile
from receipts, re-send stuck transactions with the same nonce and higher fees, reverts with reasons."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db.models import Q

from chain import sender
from chain.evm.anvil import DEV_ACCOUNTS
from chain.evm.client import ChainUnavailable
from chain.keys import DevKeyRefused
from chain.models import Chain, ChainKind, ChainTransaction, SenderNonce, TxStatus
from chain.sender import (
    revert_reason,
    transaction_record,
    transaction_resend,
    transaction_send,
    transactions_reconcile,
    transactions_run,
)
from chain.tasks import send_transactions
from tests.factories import make_user

KEY_ENV = "CHAIN_TEST_SENDER_KEY"
SENDER = DEV_ACCOUNTS[2]  # not the deployer: its nonces start at 0
RECIPIENT = DEV_ACCOUNTS[3].address
ZERO_REF = "0x" + "00" * 32


@pytest.fixture
def sender_key(settings, monkeypatch):
    settings.DEBUG = True  # the anvil test keys are refused otherwise
    monkeypatch.setenv(KEY_ENV, SENDER.private_key)
    return SENDER


@pytest.fixture
def base(devnet_chain, sender_key, settings):
    """Base on anvil (automining), the registry row and the sender's key in the environment."""
    node = devnet_chain()
    settings.CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS = 120
    return node, Chain.objects.get(key="base")


def _record(chain, reference: str, **fields) -> ChainTransaction:
    fields.setdefault("to", RECIPIENT)
    fields.setdefault("value", 10**15)
    return transaction_record(chain=chain, purpose="payout", reference=reference, sender_key_env=KEY_ENV, **fields)


def _deposit_call(node, ref: str = ZERO_REF) -> str:
    return node.contract("PaymentReceiver").encode_abi("deposit", args=[bytes.fromhex(ref[2:])])


def _wait_mined(node, tx: ChainTransaction) -> None:
    """anvil's automine answers eth_sendRawTransaction before the block exists."""
    node.w3.eth.wait_for_transaction_receipt(tx.tx_hash, timeout=10, poll_latency=0.05)


def _sent_count(node) -> int:
    return node.w3.eth.get_transaction_count(SENDER.address, "pending")


def test_recording_twice_keeps_one_row_and_sends_nothing(db, sender_key):
    chain = Chain.objects.create(
        key="base", chain_id=8453, name="Base", kind=ChainKind.EVM, native_symbol="ETH", native_decimals=18,
        finality=3, block_time_ms=2000,
    )  # fmt: skip
    first = _record(chain, "payout:1")
    again = _record(chain, "payout:1", value=5)  # a retry with other arguments: still the first row
    assert again.pk == first.pk and int(again.value) == 10**15
    assert ChainTransaction.objects.count() == 1
    assert first.status == TxStatus.RECORDED and first.nonce is None and not first.tx_hash
    assert first.sender == SENDER.address


def test_a_transfer_is_sent_and_reconciled_as_mined(base):
    node, chain = base
    before = node.w3.eth.get_balance(RECIPIENT)
    tx = transaction_send(tx_id=_record(chain, "payout:1").pk)
    assert tx.status == TxStatus.SENT and tx.nonce == 0 and tx.attempts == 1
    assert [entry["hash"] for entry in tx.history] == [tx.tx_hash]

    _wait_mined(node, tx)
    result = transactions_reconcile(chain=chain)
    tx.refresh_from_db()
    assert result.mined == 1
    assert tx.status == TxStatus.MINED and tx.receipt_status == 1 and tx.gas_used == 21000
    assert tx.receipt_block == node.w3.eth.get_transaction_receipt(tx.tx_hash)["blockNumber"]
    assert node.w3.eth.get_balance(RECIPIENT) == before + 10**15
    # Sending it again is a no-op.
    assert transaction_send(tx_id=tx.pk).status == TxStatus.MINED
    assert _sent_count(node) == 1


def test_nonces_are_consecutive_and_the_beat_pass_sends_and_reconciles(base, settings):
    node, chain = base
    first, second = _record(chain, "payout:1"), _record(chain, "payout:2")
    outcome = transactions_run()
    assert outcome["base"].startswith("sent 2")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.nonce, second.nonce) == (0, 1)
    assert SenderNonce.objects.get(chain=chain, address=SENDER.address).next_nonce == 2
    _wait_mined(node, second)
    assert settings.CELERY_BEAT_SCHEDULE["send-transactions"]["task"] == send_transactions.name
    send_transactions()  # the beat task: the same pass
    assert set(ChainTransaction.objects.values_list("status", flat=True)) == {TxStatus.MINED}


def test_nonce_follows_the_chain_when_the_address_was_used_elsewhere(base):
    node, chain = base
    signed = node.w3.eth.account.sign_transaction(
        {"to": RECIPIENT, "value": 1, "gas": 21000, "gasPrice": node.w3.eth.gas_price * 2, "nonce": 0, "chainId": 8453},
        SENDER.private_key,
    )
    node.w3.eth.send_raw_transaction(signed.raw_transaction)
    tx = transaction_send(tx_id=_record(chain, "payout:1").pk)
    assert tx.nonce == 1


def test_a_crash_before_the_broadcast_sends_the_same_transaction_once(base, monkeypatch):
    node, chain = base
    tx = _record(chain, "slash:42")

    def crash(self, raw_tx):
        raise ChainUnavailable("the worker died here")

    monkeypatch.setattr(sender.Rpc, "send_raw", crash)
    with pytest.raises(ChainUnavailable):
        transaction_send(tx_id=tx.pk)
    tx.refresh_from_db()
    signed_hash = tx.tx_hash
    assert tx.status == TxStatus.RECORDED and signed_hash and tx.nonce == 0
    assert _sent_count(node) == 0

    monkeypatch.undo()
    monkeypatch.setenv(KEY_ENV, SENDER.private_key)
    tx = transaction_send(tx_id=tx.pk)
    assert tx.status == TxStatus.SENT and tx.tx_hash == signed_hash and tx.attempts == 1
    _wait_mined(node, tx)
    transactions_reconcile(chain=chain)
    tx.refresh_from_db()
    assert tx.status == TxStatus.MINED and _sent_count(node) == 1


def test_a_crash_after_the_broadcast_is_found_by_hash_not_sent_again(base, monkeypatch):
    node, chain = base
    tx = _record(chain, "slash:43")
    broadcast = sender.Rpc.send_raw

    def send_then_crash(self, raw_tx):
        broadcast(self, raw_tx)
        raise ChainUnavailable("the worker died before storing the outcome")

    monkeypatch.setattr(sender.Rpc, "send_raw", send_then_crash)
    with pytest.raises(ChainUnavailable):
        transaction_send(tx_id=tx.pk)
    assert _sent_count(node) == 1

    def never(self, raw_tx):
        raise AssertionError("broadcast again")

    monkeypatch.setattr(sender.Rpc, "send_raw", never)
    tx = transaction_send(tx_id=tx.pk)
    assert tx.status == TxStatus.SENT and tx.attempts == 1
    assert _sent_count(node) == 1


def test_a_revert_at_estimation_fails_with_the_custom_error_and_takes_no_nonce(base):
    node, chain = base
    receiver = node.contracts["PaymentReceiver"]
    zero_ref = _record(chain, "deposit:zero", to=receiver, data=_deposit_call(node))
    plain = _record(chain, "deposit:plain", to=receiver)  # receive() reverts NoReference()
    assert transaction_send(tx_id=zero_ref.pk).status == TxStatus.FAILED
    assert transaction_send(tx_id=plain.pk).status == TxStatus.FAILED
    zero_ref.refresh_from_db()
    plain.refresh_from_db()
    assert zero_ref.revert_reason == "ZeroAccountRef()"
    assert plain.revert_reason == "NoReference()"
    assert zero_ref.nonce is None and not zero_ref.tx_hash
    assert _sent_count(node) == 0
    # The next transaction still gets nonce 0: no gap.
    assert transaction_send(tx_id=_record(chain, "payout:1").pk).nonce == 0


def test_a_revert_when_mined_is_failed_with_the_reason_replayed(base):
    node, chain = base
    receiver = node.contracts["PaymentReceiver"]
    tx = _record(chain, "deposit:zero", to=receiver, data=_deposit_call(node), gas_limit=100_000)
    tx = transaction_send(tx_id=tx.pk)  # a given gas limit: no estimate, so it is mined and reverts
    assert tx.status == TxStatus.SENT
    _wait_mined(node, tx)
    result = transactions_reconcile(chain=chain)
    tx.refresh_from_db()
    assert result.failed == 1
    assert tx.status == TxStatus.FAILED and tx.receipt_status == 0 and tx.receipt_block
    assert tx.revert_reason == "ZeroAccountRef()"


def test_no_receipt_re_sends_with_the_same_nonce_and_higher_fees(base, settings):
    node, chain = base
    node.rpc("evm_setAutomine", [False])
    settings.CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS = 0
    tx = transaction_send(tx_id=_record(chain, "payout:1").pk)
    first_hash, first_raw = tx.tx_hash, tx.raw_tx
    first_fee, first_tip = int(tx.max_fee_per_gas), int(tx.max_priority_fee_per_gas)

    result = transactions_reconcile(chain=chain)
    tx.refresh_from_db()
    assert result.resent == 1
    assert tx.nonce == 0 and tx.attempts == 2 and tx.status == TxStatus.SENT
    assert [entry["hash"] for entry in tx.history] == [first_hash, tx.tx_hash] and tx.tx_hash != first_hash
    assert int(tx.max_fee_per_gas) * 1000 >= first_fee * 1125
    assert int(tx.max_priority_fee_per_gas) * 1000 >= first_tip * 1125
    pending = node.w3.eth.get_transaction(tx.tx_hash)
    assert pending["nonce"] == 0

    # The older version is the one mined (the newer one dropped, the older re-broadcast): recognised.
    node.rpc("anvil_dropTransaction", [tx.tx_hash])
    node.rpc("eth_sendRawTransaction", [first_raw])
    node.rpc("evm_mine")
    settings.CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS = 120
    result = transactions_reconcile(chain=chain)
    tx.refresh_from_db()
    assert result.mined == 1
    assert tx.status == TxStatus.MINED and tx.tx_hash == first_hash and len(tx.history) == 2
    assert _sent_count(node) == 1


def test_stuck_after_the_last_attempt_until_an_operator_re_sends(base, settings, client):
    node, chain = base
    node.rpc("evm_setAutomine", [False])
    settings.CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS = 0
    settings.CHAIN_SENDER_MAX_ATTEMPTS = 2
    tx = transaction_send(tx_id=_record(chain, "payout:1").pk)
    transactions_reconcile(chain=chain)  # attempt 2
    result = transactions_reconcile(chain=chain)
    tx.refresh_from_db()
    assert result.stuck == 1 and tx.status == TxStatus.STUCK and tx.attempts == 2
    assert transactions_reconcile(chain=chain).resent == 0  # left to the operator

    viewer = make_user(email="viewer@example.test", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_chaintransaction"))
    client.force_login(viewer)
    page = client.get("/admin/chain/chaintransaction/")
    assert page.status_code == 200 and b"payout:1" in page.content and b"resend_now" not in page.content
    client.post("/admin/chain/chaintransaction/", {"action": "resend_now", "_selected_action": [tx.pk]})
    tx.refresh_from_db()
    assert tx.attempts == 2  # a viewer cannot make the platform sign

    admin = make_user(email="ops@example.test", is_staff=True, is_superuser=True)
    client.force_login(admin)
    page = client.get("/admin/chain/chaintransaction/?status__exact=stuck")
    assert page.status_code == 200 and b"payout:1" in page.content and b"Stuck" in page.content
    assert b"resend_now" in page.content
    answer = client.post(
        "/admin/chain/chaintransaction/", {"action": "resend_now", "_selected_action": [tx.pk]}, follow=True
    )
    assert answer.status_code == 200
    tx.refresh_from_db()
    assert tx.status == TxStatus.SENT and tx.attempts == 3 and tx.nonce == 0

    node.rpc("evm_mine")
    transactions_reconcile(chain=chain)
    tx.refresh_from_db()
    assert tx.status == TxStatus.MINED and tx.tx_hash == tx.history[-1]["hash"]


def test_a_nonce_taken_by_a_foreign_transaction_is_replaced(base):
    node, chain = base
    node.rpc("evm_setAutomine", [False])
    tx = transaction_send(tx_id=_record(chain, "payout:1").pk)
    # Someone else with the same key replaces it (same nonce, double the fees).
    foreign = node.w3.eth.account.sign_transaction(
        {
            "type": 2, "chainId": 8453, "nonce": 0, "to": DEV_ACCOUNTS[4].address, "value": 1, "gas": 21000,
            "maxFeePerGas": int(tx.max_fee_per_gas) * 2, "maxPriorityFeePerGas": int(tx.max_priority_fee_per_gas) * 2,
        },
        SENDER.private_key,
    )  # fmt: skip
    node.w3.eth.send_raw_transaction(foreign.raw_transaction)
    node.rpc("evm_mine")
    assert transactions_reconcile(chain=chain).replaced == 1
    tx.refresh_from_db()
    assert tx.status == TxStatus.REPLACED


def test_an_anvil_key_is_refused_outside_debug(base, settings):
    node, chain = base
    tx = _record(chain, "payout:1")
    settings.DEBUG = False
    with pytest.raises(DevKeyRefused):
        _record(chain, "payout:2")
    with pytest.raises(DevKeyRefused):
        transaction_send(tx_id=tx.pk)
    assert ChainTransaction.objects.filter(~Q(status=TxStatus.RECORDED)).count() == 0
    assert _sent_count(node) == 0
    with pytest.raises(DevKeyRefused):
        transaction_resend(tx_id=tx.pk)


def test_revert_reasons_are_decoded():
    from eth_abi import encode

    assert revert_reason("0x08c379a0" + encode(["string"], ["not the slasher"]).hex()) == "not the slasher"
    assert revert_reason("0x4e487b71" + encode(["uint256"], [0x11]).hex()) == "Panic(0x11)"
    assert revert_reason(None, "execution reverted") == "execution reverted"
    assert revert_reason("0xdeadbeef").startswith("custom error 0xdeadbeef")


def test_a_refused_broadcast_is_re_signed_with_market_fees(base, settings, monkeypatch):
    node, chain = base
    monkeypatch.setattr(sender, "_market_fees", lambda rpc: sender.Fees(max_fee_per_gas=1, max_priority_fee_per_gas=1))
    tx = transaction_send(tx_id=_record(chain, "payout:1").pk)
    assert tx.status == TxStatus.RECORDED and tx.tx_hash and tx.error.startswith("broadcast:")
    assert _sent_count(node) == 0

    monkeypatch.undo()
    monkeypatch.setenv(KEY_ENV, SENDER.private_key)
    settings.CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS = 0
    assert transactions_reconcile(chain=chain).resent == 1
    tx.refresh_from_db()
    assert tx.status == TxStatus.SENT and tx.nonce == 0 and tx.attempts == 2 and not tx.error
    _wait_mined(node, tx)
    transactions_reconcile(chain=chain)
    tx.refresh_from_db()
    assert tx.status == TxStatus.MINED
