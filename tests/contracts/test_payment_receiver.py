"""PaymentReceiver on anvil (chain id 8453, Base): each function, event, role and revert."""

from __future__ import annotations

import pytest

from chain.evm.anvil import DEV_ACCOUNTS
from tests.contracts.helpers import (
    OTHER_REF,
    REF,
    ZERO_ADDRESS,
    ZERO_REF,
    assert_reverts,
    call,
    error_data,
    events,
    send,
    transaction_of,
)

OWNER, TREASURY, PAYER, OUTSIDER, NEW_TREASURY = DEV_ACCOUNTS[:5]
BASE = 8453


@pytest.fixture
def node(anvil):
    return anvil(chain_id=BASE, deploy=True)


@pytest.fixture
def receiver(node):
    return node.contract("PaymentReceiver")


def _usdc_for(node, account, amount):
    """Mints test USDC to `account` (the deployer owns TestUSDC) and approves the receiver."""
    usdc = node.contract("TestUSDC")
    call(node.w3, OWNER, usdc.functions.mint(account.address, amount))
    call(node.w3, account, usdc.functions.approve(node.contracts["PaymentReceiver"], amount))
    return usdc


def _spon_for(node, account, amount):
    spon = node.contract("SponToken")
    call(node.w3, TREASURY, spon.functions.transfer(account.address, amount))
    call(node.w3, account, spon.functions.approve(node.contracts["PaymentReceiver"], amount))
    return spon


def _deposits(receiver, receipt):
    return events(receiver, "Deposit", receipt)


def test_deployed_with_owner_treasury_and_both_tokens_allowed(node, receiver):
    assert receiver.functions.owner().call() == OWNER.address
    assert receiver.functions.treasury().call() == TREASURY.address
    assert receiver.functions.tokenAllowed(node.contracts["SponToken"]).call() is True
    assert receiver.functions.tokenAllowed(node.contracts["TestUSDC"]).call() is True
    assert receiver.functions.tokenAllowed(ZERO_ADDRESS).call() is False


def test_native_deposit_emits_deposit_with_token_zero(node, receiver):
    amount = 10**17
    receipt = call(node.w3, PAYER, receiver.functions.deposit(REF), value=amount)

    [deposit] = _deposits(receiver, receipt)
    assert deposit == {
        "accountRef": bytes.fromhex(REF[2:]),
        "payer": PAYER.address,
        "token": ZERO_ADDRESS,
        "amount": amount,
    }
    assert node.w3.eth.get_balance(receiver.address) == amount
    # The reference is an indexed topic: a watcher can filter one account's deposits.
    [log] = receipt["logs"]
    assert log["topics"][1].hex() == REF[2:]


def test_usdc_deposit_emits_deposit_with_the_token(node, receiver):
    usdc = _usdc_for(node, PAYER, 25_000_000)  # 25 USDC (6 decimals)

    receipt = call(node.w3, PAYER, receiver.functions.depositToken(usdc.address, 25_000_000, REF))

    assert _deposits(receiver, receipt) == [
        {"accountRef": bytes.fromhex(REF[2:]), "payer": PAYER.address, "token": usdc.address, "amount": 25_000_000}
    ]
    assert usdc.functions.balanceOf(receiver.address).call() == 25_000_000
    assert usdc.functions.balanceOf(PAYER.address).call() == 0


def test_spon_deposit_emits_deposit_with_the_token(node, receiver):
    amount = 1_500 * 10**18
    spon = _spon_for(node, PAYER, amount)

    receipt = call(node.w3, PAYER, receiver.functions.depositToken(spon.address, amount, OTHER_REF))

    assert _deposits(receiver, receipt) == [
        {"accountRef": bytes.fromhex(OTHER_REF[2:]), "payer": PAYER.address, "token": spon.address, "amount": amount}
    ]
    assert spon.functions.balanceOf(receiver.address).call() == amount


def test_token_not_allowed_reverts(node, receiver):
    usdc = _usdc_for(node, PAYER, 1_000_000)
    call(node.w3, OWNER, receiver.functions.setTokenAllowed(usdc.address, False))

    assert_reverts(
        node.w3,
        PAYER,
        transaction_of(receiver.functions.depositToken(usdc.address, 1_000_000, REF)),
        error_data("TokenNotAllowed(address)", ("address",), (usdc.address,)),
    )
    assert usdc.functions.balanceOf(PAYER.address).call() == 1_000_000


def test_token_deposit_without_allowance_reverts(node, receiver):
    usdc = node.contract("TestUSDC")
    call(node.w3, OWNER, usdc.functions.mint(PAYER.address, 1_000_000))

    assert_reverts(
        node.w3,
        PAYER,
        transaction_of(receiver.functions.depositToken(usdc.address, 1_000_000, REF)),
        error_data(
            "ERC20InsufficientAllowance(address,uint256,uint256)",
            ("address", "uint256", "uint256"),
            (receiver.address, 0, 1_000_000),
        ),
    )


def test_zero_amounts_revert(node, receiver):
    usdc = _usdc_for(node, PAYER, 1_000_000)
    zero_amount = error_data("ZeroAmount()")

    assert_reverts(node.w3, PAYER, transaction_of(receiver.functions.deposit(REF)), zero_amount)
    assert_reverts(node.w3, PAYER, transaction_of(receiver.functions.depositToken(usdc.address, 0, REF)), zero_amount)


def test_zero_reference_reverts(node, receiver):
    usdc = _usdc_for(node, PAYER, 1_000_000)
    zero_ref = error_data("ZeroAccountRef()")

    assert_reverts(node.w3, PAYER, transaction_of(receiver.functions.deposit(ZERO_REF), value=10**15), zero_ref)
    assert_reverts(
        node.w3, PAYER, transaction_of(receiver.functions.depositToken(usdc.address, 1_000_000, ZERO_REF)), zero_ref
    )


def test_plain_transfer_without_reference_reverts(node, receiver):
    no_reference = error_data("NoReference()")
    before = node.w3.eth.get_balance(PAYER.address)

    assert_reverts(node.w3, PAYER, {"to": receiver.address, "value": 10**16}, no_reference)  # receive()
    assert_reverts(node.w3, PAYER, {"to": receiver.address, "value": 10**16, "data": "0x1234"}, no_reference)
    assert_reverts(node.w3, PAYER, {"to": receiver.address, "value": 0, "data": "0xdeadbeef"}, no_reference)

    assert node.w3.eth.get_balance(receiver.address) == 0
    assert before - node.w3.eth.get_balance(PAYER.address) < 10**16  # only gas was spent


@pytest.mark.parametrize("who", [PAYER, OUTSIDER, TREASURY], ids=["payer", "outsider", "treasury"])
def test_only_the_owner_manages_the_receiver(node, receiver, who):
    not_owner = error_data("OwnableUnauthorizedAccount(address)", ("address",), (who.address,))
    usdc = node.contracts["TestUSDC"]

    assert_reverts(node.w3, who, transaction_of(receiver.functions.withdraw(ZERO_ADDRESS)), not_owner)
    assert_reverts(node.w3, who, transaction_of(receiver.functions.withdraw(usdc)), not_owner)
    assert_reverts(node.w3, who, transaction_of(receiver.functions.setTokenAllowed(usdc, False)), not_owner)
    assert_reverts(node.w3, who, transaction_of(receiver.functions.setTreasury(who.address)), not_owner)
    assert_reverts(node.w3, who, transaction_of(receiver.functions.transferOwnership(who.address)), not_owner)

    assert receiver.functions.tokenAllowed(usdc).call() is True
    assert receiver.functions.treasury().call() == TREASURY.address
    assert receiver.functions.owner().call() == OWNER.address


def test_set_token_allowed_emits_and_switches(node, receiver):
    usdc = node.contracts["TestUSDC"]

    receipt = call(node.w3, OWNER, receiver.functions.setTokenAllowed(usdc, False))

    [event] = events(receiver, "TokenAllowed", receipt)
    assert event == {"token": usdc, "allowed": False}
    assert receiver.functions.tokenAllowed(usdc).call() is False
    call(node.w3, OWNER, receiver.functions.setTokenAllowed(usdc, True))
    assert receiver.functions.tokenAllowed(usdc).call() is True
    assert_reverts(
        node.w3,
        OWNER,
        transaction_of(receiver.functions.setTokenAllowed(ZERO_ADDRESS, True)),
        error_data("ZeroAddress()"),
    )


def test_set_treasury_emits_and_redirects_withdrawals(node, receiver):
    receipt = call(node.w3, OWNER, receiver.functions.setTreasury(NEW_TREASURY.address))

    [event] = events(receiver, "TreasuryChanged", receipt)
    assert event == {"previousTreasury": TREASURY.address, "newTreasury": NEW_TREASURY.address}
    assert receiver.functions.treasury().call() == NEW_TREASURY.address
    assert_reverts(
        node.w3, OWNER, transaction_of(receiver.functions.setTreasury(ZERO_ADDRESS)), error_data("ZeroAddress()")
    )

    call(node.w3, PAYER, receiver.functions.deposit(REF), value=10**18)
    before = node.w3.eth.get_balance(NEW_TREASURY.address)
    call(node.w3, OWNER, receiver.functions.withdraw(ZERO_ADDRESS))
    assert node.w3.eth.get_balance(NEW_TREASURY.address) - before == 10**18


def test_withdraw_moves_native_balance_to_the_treasury(node, receiver):
    call(node.w3, PAYER, receiver.functions.deposit(REF), value=3 * 10**17)
    call(node.w3, OUTSIDER, receiver.functions.deposit(OTHER_REF), value=2 * 10**17)
    treasury_before = node.w3.eth.get_balance(TREASURY.address)

    receipt = call(node.w3, OWNER, receiver.functions.withdraw(ZERO_ADDRESS))

    assert node.w3.eth.get_balance(receiver.address) == 0
    assert node.w3.eth.get_balance(TREASURY.address) - treasury_before == 5 * 10**17
    [event] = events(receiver, "Withdrawal", receipt)
    assert event == {"token": ZERO_ADDRESS, "treasury": TREASURY.address, "amount": 5 * 10**17}


def test_withdraw_moves_token_balances_to_the_treasury(node, receiver):
    usdc = _usdc_for(node, PAYER, 7_000_000)
    spon = _spon_for(node, PAYER, 40 * 10**18)
    call(node.w3, PAYER, receiver.functions.depositToken(usdc.address, 7_000_000, REF))
    call(node.w3, PAYER, receiver.functions.depositToken(spon.address, 40 * 10**18, REF))
    spon_before = spon.functions.balanceOf(TREASURY.address).call()

    usdc_receipt = call(node.w3, OWNER, receiver.functions.withdraw(usdc.address))
    call(node.w3, OWNER, receiver.functions.withdraw(spon.address))

    assert usdc.functions.balanceOf(receiver.address).call() == 0
    assert usdc.functions.balanceOf(TREASURY.address).call() == 7_000_000
    assert spon.functions.balanceOf(receiver.address).call() == 0
    assert spon.functions.balanceOf(TREASURY.address).call() - spon_before == 40 * 10**18
    [event] = events(receiver, "Withdrawal", usdc_receipt)
    assert event == {"token": usdc.address, "treasury": TREASURY.address, "amount": 7_000_000}


def test_owner_cannot_send_a_plain_transfer_either(node, receiver):
    receipt = send(node.w3, OWNER, {"to": receiver.address, "value": 1, "gas": 100_000})
    assert receipt["status"] == 0
