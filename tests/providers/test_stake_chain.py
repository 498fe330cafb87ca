"""Stake from the chain (providers.stake_chain) on anvil: SponStaking's events of a linked stake
address become StakeEvents once, at finality, and the counted stake and node coverage follow."""

from __future__ import annotations

import pytest
from web3 import Web3

from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import Chain
from providers.models import Node, StakeEvent, StakeSource
from providers.services import stake_coverage_refresh, stake_record
from providers.stake_chain import stake_chain_index, stake_pending
from tests.chain_fixtures import stake_link
from tests.contracts.helpers import call
from tests.factories import make_node, make_provider

ADMIN, TREASURY, STAKER, STRANGER = DEV_ACCOUNTS[:4]
SPON = 10**18
FINALITY = 3
REASON = Web3.keccak(text="challenge failed: node 42")


@pytest.fixture
def home(home_chain, db):
    node = home_chain(staking=True, finality=FINALITY)
    return node, Chain.objects.get(key="base")


@pytest.fixture
def linked(db):
    """A provider with one 2-GPU agent node and STAKER linked as its stake address."""
    provider = make_provider()
    node = make_node(provider=provider, gpu_count=2, is_simulated=False, stake_covered=False)
    stake_link(provider.user, STAKER.address)
    return provider, node


def _stake(node, account, amount):
    spon, staking = node.contract("SponToken"), node.contract("SponStaking")
    call(node.w3, TREASURY, spon.functions.transfer(account.address, amount))
    call(node.w3, account, spon.functions.approve(node.contracts["SponStaking"], amount))
    return call(node.w3, account, staking.functions.stake(amount))


def _finalize(node):
    node.rpc("anvil_mine", [hex(FINALITY - 1)])


def test_a_stake_is_recorded_once_at_finality_and_covers_the_node(home, linked):
    node, chain = home
    provider, machine = linked
    receipt = _stake(node, STAKER, 400 * SPON)

    assert stake_chain_index().recorded == 0  # not final yet: nothing read
    assert not StakeEvent.objects.exists()

    _finalize(node)
    assert stake_chain_index().recorded == 1
    assert stake_chain_index().recorded == 0  # a second run records nothing again

    event = StakeEvent.objects.get()
    assert (event.source, event.kind, int(event.amount), int(event.balance_after)) == (
        "chain",
        "stake",
        400 * SPON,
        400 * SPON,
    )
    assert (event.chain_id, event.tx_hash, event.block_number) == (
        8453,
        "0x" + receipt["transactionHash"].hex().removeprefix("0x"),
        receipt["blockNumber"],
    )
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 400 * SPON
    machine.refresh_from_db()
    assert machine.stake_covered  # 2 GPUs × 200 $SPON
    assert stake_coverage_refresh(provider=provider) == 2


def test_an_unstake_request_lowers_the_counted_stake_and_waits_its_cooldown(home, linked):
    node, _chain = home
    provider, machine = linked
    _stake(node, STAKER, 400 * SPON)
    staking = node.contract("SponStaking")
    receipt = call(node.w3, STAKER, staking.functions.requestUnstake(100 * SPON))
    _finalize(node)
    assert stake_chain_index().recorded == 2

    provider.refresh_from_db()
    machine.refresh_from_db()
    assert int(provider.staked_spon) == 300 * SPON  # pending stake no longer counts
    assert not machine.stake_covered
    pending = stake_pending(provider=provider, address=STAKER.address)
    unlock = node.w3.eth.get_block(receipt["blockNumber"])["timestamp"] + 300
    assert [(p.amount, int(p.unlock_at.timestamp())) for p in pending] == [(100 * SPON, unlock)]

    node.rpc("evm_increaseTime", [301])
    node.rpc("evm_mine")
    call(node.w3, STAKER, staking.functions.withdraw())
    _finalize(node)
    assert stake_chain_index().recorded == 1
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 300 * SPON  # a withdrawal does not change the active stake
    assert stake_pending(provider=provider, address=STAKER.address) == []


def test_a_slash_is_recorded_with_its_reason_hash(home, linked):
    node, _chain = home
    provider, _machine = linked
    _stake(node, STAKER, 400 * SPON)
    staking = node.contract("SponStaking")
    call(node.w3, STAKER, staking.functions.requestUnstake(300 * SPON))
    call(node.w3, ADMIN, staking.functions.slash(STAKER.address, 150 * SPON, REASON))
    _finalize(node)
    stake_chain_index()

    slash = StakeEvent.objects.get(kind="slash")
    assert slash.reason == f"reason hash 0x{REASON.hex().removeprefix('0x')}"
    assert (int(slash.amount), int(slash.from_pending)) == (150 * SPON, 50 * SPON)  # active first
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 0 and provider.slash_count == 1
    assert [p.amount for p in stake_pending(provider=provider, address=STAKER.address)] == [250 * SPON]


def test_an_unlinked_address_stake_is_ignored(home, linked):
    node, _chain = home
    provider, _machine = linked
    _stake(node, STRANGER, 400 * SPON)
    _finalize(node)
    result = stake_chain_index()
    assert (result.recorded, result.ignored) == (0, 1)
    assert not StakeEvent.objects.exists()
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 0


def test_admin_recorded_stake_adds_to_the_chain_stake(home, linked):
    node, _chain = home
    provider, machine = linked
    stake_record(provider=provider, kind="stake", amount="250", reason="off-chain agreement")
    _stake(node, STAKER, 150 * SPON)
    _finalize(node)
    stake_chain_index()
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 400 * SPON
    assert list(StakeEvent.objects.order_by("id").values_list("source", flat=True)) == [
        StakeSource.ADMIN,
        StakeSource.CHAIN,
    ]
    assert Node.objects.get(id=machine.id).stake_covered


def test_no_contract_address_reads_nothing(db, settings):
    settings.STAKING_CONTRACT_ADDRESS = ""
    settings.CHAIN_DEVNET = False
    assert stake_chain_index().skipped


def test_on_a_devnet_the_contract_address_defaults_to_the_deployed_one(home, settings):
    from providers.stake_chain import staking_address

    node, _chain = home
    settings.STAKING_CONTRACT_ADDRESS = ""
    settings.CHAIN_DEVNET = True
    assert staking_address() == node.contracts["SponStaking"]


def test_on_a_devnet_that_restarted_empty_the_cursor_starts_again(home, linked, settings):
    from providers.models import StakeCursor

    node, _chain = home
    settings.CHAIN_DEVNET = True
    StakeCursor.objects.create(chain_id=8453, contract_address=node.contracts["SponStaking"], last_block=10**6)
    _stake(node, STAKER, 400 * SPON)
    _finalize(node)
    assert stake_chain_index().recorded == 1
