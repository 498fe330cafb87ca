"""Many deposits at once: receipts read in JSON-RPC batches, deposits finalized and credited in
batches, with the same outcome as one at a time (issue 20's bench/watcher.py)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from billing import deposits as billing_deposits
from billing.models import AccountKind, LedgerTransaction, TransactionKind
from billing.selectors import cached_balances_mismatch, ledger_total, user_balances
from billing.services import account_get, transaction_post
from chain.evm import client as evm_client
from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import Chain, ChainToken, Deposit, DepositStatus
from chain.registry import ChainAddresses, registry_sync
from chain.services import chain_watch, reference_for
from tests.factories import make_user

PAYER = DEV_ACCOUNTS[2]
CENTI_ETH = 10**16  # $30 at the devnet's ETH rate; $29.40 credited after the 2% fee
NET = 29_400_000


def _owe(user, micros: int) -> None:
    """Put `user` in debt (as an unpaid usage charge would)."""
    transaction_post(
        kind=TransactionKind.ADJUSTMENT,
        reference_type="user",
        reference_id=str(user.id),
        lines=[
            (account_get(kind=AccountKind.USER_DEBT, user=user), -micros),
            (account_get(kind=AccountKind.CLEARING_ADJUSTMENTS), micros),
        ],
    )


def _send(node, refs: list[str]) -> list[str]:
    """One native deposit per reference, all mined in one block."""
    receiver = node.contract("PaymentReceiver")
    node.rpc("evm_setAutomine", [False])
    hashes = [
        receiver.functions.deposit(bytes.fromhex(ref[2:])).transact({"from": PAYER.address, "value": CENTI_ETH})
        for ref in refs
    ]
    node.rpc("evm_mine")
    node.rpc("evm_setAutomine", [True])
    return ["0x" + bytes(tx).hex() for tx in hashes]


@pytest.mark.django_db(transaction=True)
def test_deposits_final_in_one_run_are_credited_once_each_and_debt_is_repaid_first(devnet_chain, monkeypatch):
    monkeypatch.setattr(billing_deposits, "CREDIT_BATCH", 4)  # three batches for nine deposits

    def one_by_one(**kwargs):
        raise AssertionError("a batch fell back to one deposit per transaction")

    monkeypatch.setattr(billing_deposits, "deposit_credit", one_by_one)
    node = devnet_chain()
    owing, other = make_user(email="owing@example.test"), make_user(email="other@example.test")
    _owe(owing, 40_000_000)  # more than one deposit's credit: the first repays 29.40, the second 10.60
    refs = [reference_for(owing).ref] * 5 + [reference_for(other).ref] * 4
    hashes = _send(node, refs)
    for _ in range(2):
        node.rpc("evm_mine")  # 3 confirmations: final

    chain_watch(chain_key="base")

    assert Deposit.objects.filter(status=DepositStatus.CREDITED).count() == 9
    assert user_balances(user=owing).available == 5 * NET - 40_000_000
    assert user_balances(user=owing).debt == 0
    assert user_balances(user=other).available == 4 * NET
    txns = LedgerTransaction.objects.filter(idempotency_key__startswith="deposit:base:")
    assert txns.count() == 9
    first, second = (Deposit.objects.get(tx_hash=tx_hash) for tx_hash in hashes[:2])
    assert txns.get(id=first.credited_txn_id).memo == (
        f"Crypto top-up: 0.01 ETH on Base at $3000, $0.60 fee (tx {first.tx_hash}); $29.40 repaid debt"
    )
    assert txns.get(id=second.credited_txn_id).memo.endswith("; $10.60 repaid debt")
    assert ledger_total() == 0
    assert not cached_balances_mismatch().exists()
    # Run again, and the backstop too: nothing is credited twice.
    chain_watch(chain_key="base")
    assert billing_deposits.deposits_credit_final() == 0
    assert txns.count() == 9


@pytest.fixture
def final_deposits(db, settings):
    """Three FINAL native deposits on Arbitrum (no node needed: crediting reads the database only)."""
    settings.CHAIN_DEVNET_FINALITY = 3
    registry_sync(devnet=True, keys=("arbitrum",), addresses={"arbitrum": ChainAddresses(receiver="0x" + "11" * 20)})
    chain = Chain.objects.get(key="arbitrum")
    token = ChainToken.objects.get(chain=chain, address="")
    renter = make_user(email="renter@example.test")
    ref = reference_for(renter).ref
    rows = [
        Deposit.objects.create(
            chain=chain, tx_hash="0x" + f"{n:064x}", log_index=0, block_number=n, block_hash="0x" + f"{n:064x}",
            payer="0x" + "22" * 20, token=token, amount=Decimal(CENTI_ETH), account_ref=ref, user=renter,
            status=DepositStatus.FINAL, usd_rate=Decimal(3000), usd_micros=30_000_000, fee_micros=600_000,
        )
        for n in (1, 2, 3)
    ]  # fmt: skip
    return renter, rows


def test_a_batch_with_a_deposit_without_value_credits_the_others(final_deposits, caplog):
    renter, (good, bad, other) = final_deposits
    Deposit.objects.filter(id=bad.id).update(usd_micros=None)

    with caplog.at_level(logging.ERROR, logger="billing.deposits"):
        assert billing_deposits.deposits_credit_final() == 2

    statuses = dict(Deposit.objects.values_list("id", "status"))
    assert statuses == {good.id: DepositStatus.CREDITED, bad.id: DepositStatus.FINAL, other.id: DepositStatus.CREDITED}
    assert f"deposit {bad.id} not credited" in caplog.text
    assert user_balances(user=renter).available == 2 * NET
    assert ledger_total() == 0


def test_a_deposit_no_longer_final_is_left_alone_by_the_batch(final_deposits):
    renter, (good, refunded, _) = final_deposits
    Deposit.objects.filter(id=refunded.id).update(status=DepositStatus.REFUNDED)

    assert billing_deposits.deposits_credit_batch(deposit_ids=[good.id, refunded.id]) == 1

    assert Deposit.objects.get(id=refunded.id).status == DepositStatus.REFUNDED
    assert Deposit.objects.get(id=good.id).credited_txn_id is not None
    assert user_balances(user=renter).available == NET


@pytest.mark.django_db
def test_receipts_read_in_batches_equal_the_single_reads(devnet_chain, renter, monkeypatch):
    monkeypatch.setattr(evm_client, "RECEIPT_BATCH", 2)  # three requests for five hashes
    node = devnet_chain()
    hashes = _send(node, [reference_for(renter).ref] * 4)
    receiver = Chain.objects.get(key="base").receiver_address
    client = evm_client.EvmClient(node.url)
    unknown = "0x" + "ab" * 32

    found = client.tx_deposits_many([*hashes, hashes[0], unknown], receiver)

    assert found == {**{tx_hash: client.tx_deposits(tx_hash, receiver) for tx_hash in hashes}, unknown: None}
    assert {tx.block_number for tx in found.values() if tx} == {node.w3.eth.block_number}
    assert all(len(tx.deposits) == 1 and tx.succeeded for tx in found.values() if tx)


def test_an_unreachable_rpc_is_chain_unavailable_for_batched_reads():
    client = evm_client.EvmClient("http://127.0.0.1:9", timeout=2)
    with pytest.raises(evm_client.ChainUnavailable):
        client.tx_deposits_many(["0x" + "ab" * 32], "0x" + "11" * 20)
    with pytest.raises(evm_client.ChainUnavailable):
        client.deposit_logs("0x" + "11" * 20, 0, 10)
