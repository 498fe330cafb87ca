"""SponStaking on anvil (chain id 8453, Base): stake, unstake and its cool-down, withdraw, slash
by the slasher only, the treasury, and each revert."""

from __future__ import annotations

import pytest
from web3 import Web3

from chain.evm import artifacts
from chain.evm.anvil import DEV_ACCOUNTS
from tests.contracts.helpers import (
    ZERO_ADDRESS,
    assert_reverts,
    call,
    error_data,
    events,
    transaction_of,
)

ADMIN, TREASURY, PROVIDER, OTHER_PROVIDER, OUTSIDER, NEW_TREASURY = DEV_ACCOUNTS[:6]
BASE = 8453
SPON = 10**18
COOLDOWN = artifacts.DEVNET_UNSTAKE_COOLDOWN_SECONDS
SLASHER_ROLE = Web3.keccak(text="SLASHER_ROLE")
REASON = Web3.keccak(text="challenge failed: node 42")


@pytest.fixture
def node(anvil):
    return anvil(chain_id=BASE, deploy=True)


@pytest.fixture
def staking(node):
    return node.contract("SponStaking")


@pytest.fixture
def spon(node):
    return node.contract("SponToken")


def _fund(node, spon, account, amount):
    """$SPON from the treasury to `account`, approved to the staking contract."""
    call(node.w3, TREASURY, spon.functions.transfer(account.address, amount))
    call(node.w3, account, spon.functions.approve(node.contracts["SponStaking"], amount))


def _stake(node, staking, spon, account, amount):
    _fund(node, spon, account, amount)
    return call(node.w3, account, staking.functions.stake(amount))


def _pending(staking, account):
    amounts, unlock_times = staking.functions.pendingUnstakes(account.address).call()
    return list(zip(amounts, unlock_times, strict=True))


def _block_time(node, receipt):
    return node.w3.eth.get_block(receipt["blockNumber"])["timestamp"]


def _pass_time(node, seconds):
    node.rpc("evm_increaseTime", [seconds])
    node.rpc("evm_mine")


def test_deployed_with_token_treasury_cooldown_and_roles(node, staking):
    assert staking.functions.spon().call() == node.contracts["SponToken"]
    assert staking.functions.treasury().call() == TREASURY.address
    assert staking.functions.cooldownSeconds().call() == COOLDOWN
    admin_role = staking.functions.DEFAULT_ADMIN_ROLE().call()
    assert staking.functions.hasRole(admin_role, ADMIN.address).call() is True
    assert staking.functions.SLASHER_ROLE().call() == SLASHER_ROLE
    # deploy_all's operator defaults to the deployer.
    assert staking.functions.hasRole(SLASHER_ROLE, ADMIN.address).call() is True
    assert staking.functions.hasRole(SLASHER_ROLE, OUTSIDER.address).call() is False


def test_stake_takes_the_tokens_and_counts_them_as_active(node, staking, spon):
    receipt = _stake(node, staking, spon, PROVIDER, 100 * SPON)

    assert events(staking, "Staked", receipt) == [
        {"provider": PROVIDER.address, "amount": 100 * SPON, "newActive": 100 * SPON}
    ]
    assert staking.functions.activeStake(PROVIDER.address).call() == 100 * SPON
    assert spon.functions.balanceOf(PROVIDER.address).call() == 0
    assert spon.functions.balanceOf(staking.address).call() == 100 * SPON

    receipt = _stake(node, staking, spon, PROVIDER, 50 * SPON)
    assert events(staking, "Staked", receipt)[0]["newActive"] == 150 * SPON
    assert staking.functions.activeStake(PROVIDER.address).call() == 150 * SPON
    assert staking.functions.activeStake(OTHER_PROVIDER.address).call() == 0
    assert staking.functions.totalActive().call() == 150 * SPON


def test_stake_refuses_zero_and_an_unapproved_amount(node, staking, spon):
    assert_reverts(node.w3, PROVIDER, transaction_of(staking.functions.stake(0)), error_data("ZeroAmount()"))
    call(node.w3, TREASURY, spon.functions.transfer(PROVIDER.address, 10 * SPON))  # not approved
    insufficient_allowance = error_data(
        "ERC20InsufficientAllowance(address,uint256,uint256)",
        ("address", "uint256", "uint256"),
        (staking.address, 0, 10 * SPON),
    )
    assert_reverts(node.w3, PROVIDER, transaction_of(staking.functions.stake(10 * SPON)), insufficient_allowance)
    assert staking.functions.activeStake(PROVIDER.address).call() == 0


def test_requested_unstake_no_longer_counts_and_waits_the_cooldown(node, staking, spon):
    _stake(node, staking, spon, PROVIDER, 100 * SPON)

    receipt = call(node.w3, PROVIDER, staking.functions.requestUnstake(40 * SPON))

    unlock_at = _block_time(node, receipt) + COOLDOWN
    assert events(staking, "UnstakeRequested", receipt) == [
        {"provider": PROVIDER.address, "amount": 40 * SPON, "unlockAt": unlock_at}
    ]
    assert staking.functions.activeStake(PROVIDER.address).call() == 60 * SPON
    assert _pending(staking, PROVIDER) == [(40 * SPON, unlock_at)]
    assert staking.functions.pendingStake(PROVIDER.address).call() == 40 * SPON
    assert staking.functions.totalActive().call() == 60 * SPON
    assert staking.functions.totalPending().call() == 40 * SPON
    # Still held by the contract until withdrawn.
    assert spon.functions.balanceOf(staking.address).call() == 100 * SPON


def test_unstake_refuses_zero_and_more_than_the_active_stake(node, staking, spon):
    _stake(node, staking, spon, PROVIDER, 100 * SPON)
    call(node.w3, PROVIDER, staking.functions.requestUnstake(70 * SPON))

    assert_reverts(node.w3, PROVIDER, transaction_of(staking.functions.requestUnstake(0)), error_data("ZeroAmount()"))
    # Pending stake cannot be unstaked a second time.
    insufficient = error_data(
        "InsufficientActiveStake(uint256,uint256)", ("uint256", "uint256"), (30 * SPON, 31 * SPON)
    )
    assert_reverts(node.w3, PROVIDER, transaction_of(staking.functions.requestUnstake(31 * SPON)), insufficient)
    none = error_data("InsufficientActiveStake(uint256,uint256)", ("uint256", "uint256"), (0, 1))
    assert_reverts(node.w3, OUTSIDER, transaction_of(staking.functions.requestUnstake(1)), none)


def test_withdraw_before_the_unlock_reverts_and_after_it_pays_out(node, staking, spon):
    _stake(node, staking, spon, PROVIDER, 100 * SPON)
    call(node.w3, PROVIDER, staking.functions.requestUnstake(40 * SPON))

    nothing = error_data("NothingToWithdraw()")
    assert_reverts(node.w3, PROVIDER, transaction_of(staking.functions.withdraw()), nothing)
    _pass_time(node, COOLDOWN - 30)
    assert_reverts(node.w3, PROVIDER, transaction_of(staking.functions.withdraw()), nothing)

    _pass_time(node, 30)
    receipt = call(node.w3, PROVIDER, staking.functions.withdraw())

    assert events(staking, "Withdrawn", receipt) == [{"provider": PROVIDER.address, "amount": 40 * SPON}]
    assert spon.functions.balanceOf(PROVIDER.address).call() == 40 * SPON
    assert _pending(staking, PROVIDER) == []
    assert staking.functions.activeStake(PROVIDER.address).call() == 60 * SPON
    assert staking.functions.totalPending().call() == 0
    # Paid once: a second withdraw has nothing left.
    assert_reverts(node.w3, PROVIDER, transaction_of(staking.functions.withdraw()), nothing)


def test_withdraw_sends_only_the_unlocked_requests_and_keeps_the_others(node, staking, spon):
    _stake(node, staking, spon, PROVIDER, 100 * SPON)
    call(node.w3, PROVIDER, staking.functions.requestUnstake(10 * SPON))
    _pass_time(node, COOLDOWN // 2)
    later = call(node.w3, PROVIDER, staking.functions.requestUnstake(20 * SPON))
    _pass_time(node, COOLDOWN // 2)

    receipt = call(node.w3, PROVIDER, staking.functions.withdraw())

    assert events(staking, "Withdrawn", receipt)[0]["amount"] == 10 * SPON
    assert _pending(staking, PROVIDER) == [(20 * SPON, _block_time(node, later) + COOLDOWN)]
    _pass_time(node, COOLDOWN)
    call(node.w3, PROVIDER, staking.functions.withdraw())
    assert spon.functions.balanceOf(PROVIDER.address).call() == 30 * SPON
    assert _pending(staking, PROVIDER) == []


def test_pending_requests_are_capped(node, staking, spon):
    limit = staking.functions.MAX_PENDING_UNSTAKES().call()
    _stake(node, staking, spon, PROVIDER, (limit + 1) * SPON)
    for _ in range(limit):
        call(node.w3, PROVIDER, staking.functions.requestUnstake(SPON))
    too_many = error_data("TooManyPendingUnstakes(uint256)", ("uint256",), (limit,))
    assert_reverts(node.w3, PROVIDER, transaction_of(staking.functions.requestUnstake(SPON)), too_many)
    _pass_time(node, COOLDOWN)
    call(node.w3, PROVIDER, staking.functions.withdraw())
    call(node.w3, PROVIDER, staking.functions.requestUnstake(SPON))  # room again


def test_slash_by_the_slasher_sends_the_stake_to_the_treasury(node, staking, spon):
    _stake(node, staking, spon, PROVIDER, 100 * SPON)
    treasury_before = spon.functions.balanceOf(TREASURY.address).call()

    receipt = call(node.w3, ADMIN, staking.functions.slash(PROVIDER.address, 30 * SPON, REASON))

    assert events(staking, "Slashed", receipt) == [
        {"provider": PROVIDER.address, "amount": 30 * SPON, "reasonHash": REASON}
    ]
    assert staking.functions.activeStake(PROVIDER.address).call() == 70 * SPON
    assert spon.functions.balanceOf(TREASURY.address).call() == treasury_before + 30 * SPON
    assert spon.functions.balanceOf(staking.address).call() == 70 * SPON


def test_slash_takes_the_active_stake_first_then_the_latest_pending(node, staking, spon):
    _stake(node, staking, spon, PROVIDER, 100 * SPON)
    first = call(node.w3, PROVIDER, staking.functions.requestUnstake(30 * SPON))
    call(node.w3, PROVIDER, staking.functions.requestUnstake(50 * SPON))  # 20 active left

    receipt = call(node.w3, ADMIN, staking.functions.slash(PROVIDER.address, 75 * SPON, REASON))

    assert events(staking, "Slashed", receipt)[0]["amount"] == 75 * SPON
    assert staking.functions.activeStake(PROVIDER.address).call() == 0
    # 20 from active, the latest request's 50, then 5 of the first request's 30.
    assert _pending(staking, PROVIDER) == [(25 * SPON, _block_time(node, first) + COOLDOWN)]
    assert staking.functions.totalActive().call() == 0
    assert staking.functions.totalPending().call() == 25 * SPON
    # The slashed part of a pending unstake is not withdrawn later.
    _pass_time(node, COOLDOWN)
    withdrawn = call(node.w3, PROVIDER, staking.functions.withdraw())
    assert events(staking, "Withdrawn", withdrawn)[0]["amount"] == 25 * SPON
    assert spon.functions.balanceOf(staking.address).call() == 0


def test_slash_of_more_than_the_stake_takes_all_of_it(node, staking, spon):
    _stake(node, staking, spon, PROVIDER, 10 * SPON)
    call(node.w3, PROVIDER, staking.functions.requestUnstake(4 * SPON))
    treasury_before = spon.functions.balanceOf(TREASURY.address).call()

    receipt = call(node.w3, ADMIN, staking.functions.slash(PROVIDER.address, 1_000 * SPON, REASON))

    assert events(staking, "Slashed", receipt)[0]["amount"] == 10 * SPON
    assert staking.functions.activeStake(PROVIDER.address).call() == 0
    assert _pending(staking, PROVIDER) == []
    assert spon.functions.balanceOf(TREASURY.address).call() == treasury_before + 10 * SPON
    nothing = error_data("NothingToSlash(address)", ("address",), (PROVIDER.address,))
    assert_reverts(node.w3, ADMIN, transaction_of(staking.functions.slash(PROVIDER.address, SPON, REASON)), nothing)
    zero = error_data("ZeroAmount()")
    assert_reverts(node.w3, ADMIN, transaction_of(staking.functions.slash(PROVIDER.address, 0, REASON)), zero)


def test_only_the_slasher_slashes(node, staking, spon):
    _stake(node, staking, spon, PROVIDER, 10 * SPON)
    for who in (OUTSIDER, PROVIDER, TREASURY):
        unauthorized = error_data(
            "AccessControlUnauthorizedAccount(address,bytes32)", ("address", "bytes32"), (who.address, SLASHER_ROLE)
        )
        assert_reverts(
            node.w3, who, transaction_of(staking.functions.slash(PROVIDER.address, SPON, REASON)), unauthorized
        )
    assert staking.functions.activeStake(PROVIDER.address).call() == 10 * SPON

    # The admin grants the role; the new slasher can slash, and loses the right when revoked.
    call(node.w3, ADMIN, staking.functions.grantRole(SLASHER_ROLE, OUTSIDER.address))
    call(node.w3, OUTSIDER, staking.functions.slash(PROVIDER.address, SPON, REASON))
    call(node.w3, ADMIN, staking.functions.revokeRole(SLASHER_ROLE, OUTSIDER.address))
    unauthorized = error_data(
        "AccessControlUnauthorizedAccount(address,bytes32)", ("address", "bytes32"), (OUTSIDER.address, SLASHER_ROLE)
    )
    assert_reverts(
        node.w3, OUTSIDER, transaction_of(staking.functions.slash(PROVIDER.address, SPON, REASON)), unauthorized
    )
    assert staking.functions.activeStake(PROVIDER.address).call() == 9 * SPON


def test_admin_sets_the_treasury_and_slashes_go_there(node, staking, spon):
    admin_role = staking.functions.DEFAULT_ADMIN_ROLE().call()
    unauthorized = error_data(
        "AccessControlUnauthorizedAccount(address,bytes32)", ("address", "bytes32"), (OUTSIDER.address, admin_role)
    )
    assert_reverts(node.w3, OUTSIDER, transaction_of(staking.functions.setTreasury(OUTSIDER.address)), unauthorized)
    zero = error_data("ZeroAddress()")
    assert_reverts(node.w3, ADMIN, transaction_of(staking.functions.setTreasury(ZERO_ADDRESS)), zero)

    receipt = call(node.w3, ADMIN, staking.functions.setTreasury(NEW_TREASURY.address))

    assert events(staking, "TreasuryChanged", receipt) == [
        {"previousTreasury": TREASURY.address, "newTreasury": NEW_TREASURY.address}
    ]
    _stake(node, staking, spon, PROVIDER, 10 * SPON)
    call(node.w3, ADMIN, staking.functions.slash(PROVIDER.address, 3 * SPON, REASON))
    assert spon.functions.balanceOf(NEW_TREASURY.address).call() == 3 * SPON


def test_constructor_refuses_zero_addresses(node):
    artifact = artifacts.load("SponStaking")
    factory = node.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    spon_address = node.contracts["SponToken"]
    for args in (
        (ZERO_ADDRESS, TREASURY.address, COOLDOWN, ADMIN.address),
        (spon_address, ZERO_ADDRESS, COOLDOWN, ADMIN.address),
        (spon_address, TREASURY.address, COOLDOWN, ZERO_ADDRESS),
    ):
        deploy = {"data": factory.constructor(*args).data_in_transaction, "value": 0}
        assert_reverts(node.w3, ADMIN, deploy, error_data("ZeroAddress()"))
