"""Deposits on a real anvil node with the real chain id, through the watcher, to the ledger."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account

from billing.models import LedgerTransaction
from billing.selectors import user_balances
from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import Chain, Deposit, DepositStatus
from chain.services import chain_watch, deposit_check, reference_for
from core.errors import ApplicationError

PAYER = DEV_ACCOUNTS[2]
ETH = 10**18


def _pay_native(node, ref: str, wei: int) -> str:
    receiver = node.contract("PaymentReceiver")
    tx = receiver.functions.deposit(bytes.fromhex(ref[2:])).transact({"from": PAYER.address, "value": wei})
    node.w3.eth.wait_for_transaction_receipt(tx)
    return "0x" + bytes(tx).hex()


def _mine(node, blocks: int) -> None:
    for _ in range(blocks):
        node.rpc("evm_mine")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("key", "chain_id"),
    [
        ("zksync", 324),
        ("arbitrum", 42161),
        ("optimism", 10),
        ("bnb", 56),
        ("avalanche", 43114),
        ("filecoin", 314),
        ("base", 8453),
    ],
)
def test_native_deposit_is_credited_once_after_finality(devnet_chain, renter, key, chain_id):
    node = devnet_chain(key, chain_id)
    symbol = Chain.objects.get(key=key).native_symbol
    rate = {"ETH": Decimal(3000), "BNB": Decimal(600), "AVAX": Decimal(30), "FIL": Decimal(5)}[symbol]
    wei = ETH // 100 if rate > 100 else ETH  # above the devnet's $1 minimum at its demo rates
    tx_hash = _pay_native(node, reference_for(renter).ref, wei)

    chain_watch(chain_key=key)
    deposit = Deposit.objects.get(tx_hash=tx_hash)
    assert deposit.user == renter
    assert deposit.status in (DepositStatus.SEEN, DepositStatus.CONFIRMING)
    assert user_balances(user=renter).available == 0

    _mine(node, 2)  # 3 confirmations with the deposit's own block
    chain_watch(chain_key=key)
    chain_watch(chain_key=key)  # and again: nothing more
    deposit.refresh_from_db()
    assert deposit.status == DepositStatus.CREDITED
    gross = int(rate * wei * 10**6 / ETH)
    assert deposit.usd_micros == gross and deposit.fee_micros == gross * 2 // 100
    assert user_balances(user=renter).available == gross - gross * 2 // 100
    assert LedgerTransaction.objects.filter(idempotency_key__startswith=f"deposit:{key}:").count() == 1


@pytest.mark.django_db(transaction=True)
def test_token_deposit_is_credited(devnet_chain, renter):
    node = devnet_chain()
    usdc = node.contract("TestUSDC")
    receiver = node.contract("PaymentReceiver")
    deployer = DEV_ACCOUNTS[0].address
    amount = 25 * 10**6  # 25 USDC
    node.w3.eth.wait_for_transaction_receipt(usdc.functions.mint(PAYER.address, amount).transact({"from": deployer}))
    node.w3.eth.wait_for_transaction_receipt(
        usdc.functions.approve(receiver.address, amount).transact({"from": PAYER.address})
    )
    ref = bytes.fromhex(reference_for(renter).ref[2:])
    tx = receiver.functions.depositToken(usdc.address, amount, ref).transact({"from": PAYER.address})
    node.w3.eth.wait_for_transaction_receipt(tx)
    _mine(node, 3)
    chain_watch(chain_key="base")
    deposit = Deposit.objects.get()
    assert deposit.token.symbol == "USDC"
    assert deposit.status == DepositStatus.CREDITED
    assert user_balances(user=renter).available == 25_000_000 - 500_000  # 2% fee


@pytest.mark.django_db(transaction=True)
def test_a_deposit_gone_in_a_reorg_before_finality_credits_nothing(devnet_chain, renter):
    node = devnet_chain()
    snapshot = node.rpc("evm_snapshot")
    tx_hash = _pay_native(node, reference_for(renter).ref, ETH // 100)
    chain_watch(chain_key="base")
    assert Deposit.objects.get(tx_hash=tx_hash).status == DepositStatus.SEEN
    node.rpc("evm_revert", [snapshot])  # the block with the deposit is gone
    _mine(node, 5)  # a longer chain without it
    chain_watch(chain_key="base")
    deposit = Deposit.objects.get(tx_hash=tx_hash)
    assert deposit.status == DepositStatus.REORGED
    assert user_balances(user=renter).available == 0
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="deposit:").exists()


@pytest.mark.django_db(transaction=True)
def test_a_pasted_hash_is_checked_at_once(devnet_chain, renter):
    node = devnet_chain()
    tx_hash = _pay_native(node, reference_for(renter).ref, ETH // 100)
    _mine(node, 2)
    # No watcher has run: the check alone finds, finalizes and credits it.
    [deposit] = deposit_check(chain_key="base", tx_hash=tx_hash)
    deposit.refresh_from_db()
    assert deposit.status == DepositStatus.CREDITED
    assert user_balances(user=renter).available == 29_400_000
    # Checked again: the same deposit, credited once.
    deposit_check(chain_key="base", tx_hash=tx_hash.upper().replace("0X", "0x"))
    assert LedgerTransaction.objects.filter(idempotency_key__startswith="deposit:").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_pasted_hash_that_is_not_a_deposit_is_refused(devnet_chain, renter):
    node = devnet_chain()
    plain = node.w3.eth.send_transaction({"from": PAYER.address, "to": DEV_ACCOUNTS[3].address, "value": 1})
    node.w3.eth.wait_for_transaction_receipt(plain)
    with pytest.raises(ApplicationError) as not_deposit:
        deposit_check(chain_key="base", tx_hash="0x" + bytes(plain).hex())
    assert not_deposit.value.status == 422
    with pytest.raises(ApplicationError) as missing:
        deposit_check(chain_key="base", tx_hash="0x" + "ab" * 32)
    assert missing.value.status == 404


@pytest.mark.django_db(transaction=True)
def test_a_transaction_signed_for_another_chain_id_is_rejected_by_the_node(devnet_chain):
    node = devnet_chain()
    signed = Account.from_key(PAYER.private_key).sign_transaction(
        {
            "to": DEV_ACCOUNTS[3].address,
            "value": 1,
            "gas": 21000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 1,
            "nonce": 0,
            "chainId": 42161,
        }
    )
    with pytest.raises(Exception, match="(?i)chain"):
        node.w3.eth.send_raw_transaction(signed.raw_transaction)
