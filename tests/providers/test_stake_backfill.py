"""Stake from the chain, back-filled (providers.stake_chain): a provider who staked from an address
before linking it (or while it was unlinked) gets that stake counted once the address is linked,
in chain order, once, in bounded ranges that resume after an RPC error."""

from __future__ import annotations

import threading
import traceback

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import WalletLink
from chain.evm.client import ChainUnavailable
from chain.models import Chain
from providers import stake_chain
from providers.models import StakeBackfill, StakeCursor, StakeEvent
from providers.stake_chain import stake_backfill_pending, stake_chain_index, stake_pending
from tests.chain_fixtures import stake_link
from tests.contracts.helpers import call
from tests.factories import make_node, make_provider
from tests.needs import requires_postgresql
from tests.providers.test_stake_chain import FINALITY, SPON, STAKER, _finalize, _stake

COOLDOWN = 300  # the devnet deployment's cool-down (seconds)
THREADS = 4


@pytest.fixture
def home(home_chain, db):
    """An anvil node with the contracts deployed, as the home chain (as in test_stake_chain)."""
    node = home_chain(staking=True, finality=FINALITY)
    return node, Chain.objects.get(key="base")


@pytest.fixture
def provider(db):
    """A provider with one 1-GPU agent node (200 $SPON to cover it) and no stake address yet."""
    provider = make_provider()
    node = make_node(provider=provider, gpu_count=1, is_simulated=False, stake_covered=False)
    return provider, node


def _counted(provider) -> int:
    provider.refresh_from_db()
    return int(provider.staked_spon)


def _unstake(node, amount):
    return call(node.w3, STAKER, node.contract("SponStaking").functions.requestUnstake(amount))


def _index_to_the_head():
    while (result := stake_chain_index()).to_block is not None:
        pass
    return result


def test_a_stake_made_before_linking_counts_once_after_linking(home, provider):
    node, _chain = home
    profile, machine = provider
    _stake(node, STAKER, 300 * SPON)
    _finalize(node)
    result = stake_chain_index()
    assert (result.recorded, result.ignored) == (0, 1)  # not linked yet: passed over
    assert _counted(profile) == 0

    stake_link(profile.user, STAKER.address)
    assert stake_backfill_pending(chain_id=8453, address=STAKER.address)
    result = stake_chain_index()
    assert (result.recorded, result.backfilled) == (1, 1)
    assert not stake_backfill_pending(chain_id=8453, address=STAKER.address)
    assert _counted(profile) == 300 * SPON
    machine.refresh_from_db()
    assert machine.stake_covered
    event = StakeEvent.objects.get()
    assert (event.kind, event.source, int(event.amount), event.address) == (
        "stake",
        "chain",
        300 * SPON,
        STAKER.address,
    )
    assert StakeBackfill.objects.get().done_at is not None

    again = stake_chain_index()  # a second run: nothing new
    assert (again.recorded, again.backfilled) == (0, 0)
    assert _counted(profile) == 300 * SPON and StakeEvent.objects.count() == 1


def test_an_unstake_requested_before_linking_is_pending_and_not_counted(home, provider):
    node, _chain = home
    profile, machine = provider
    _stake(node, STAKER, 300 * SPON)
    receipt = _unstake(node, 100 * SPON)
    _finalize(node)
    assert stake_chain_index().ignored == 2

    stake_link(profile.user, STAKER.address)
    assert stake_chain_index().backfilled == 2
    assert _counted(profile) == 200 * SPON  # pending stake does not count
    unlock = node.w3.eth.get_block(receipt["blockNumber"])["timestamp"] + COOLDOWN
    pending = stake_pending(provider=profile, address=STAKER.address)
    assert [(p.amount, int(p.unlock_at.timestamp())) for p in pending] == [(100 * SPON, unlock)]
    machine.refresh_from_db()
    assert machine.stake_covered  # 200 for one GPU


def test_the_backfill_reads_bounded_ranges_and_resumes_after_an_rpc_error(home, provider, settings, monkeypatch):
    node, _chain = home
    profile, _machine = provider
    settings.CHAIN_SCAN_MAX_BLOCKS = 2
    first = _stake(node, STAKER, 100 * SPON)["blockNumber"]
    node.rpc("anvil_mine", [hex(5)])
    _stake(node, STAKER, 200 * SPON)
    node.rpc("anvil_mine", [hex(5)])
    _unstake(node, 50 * SPON)
    _finalize(node)
    _index_to_the_head()
    cursor = StakeCursor.objects.get().last_block
    assert not StakeEvent.objects.exists()

    stake_link(profile.user, STAKER.address)
    ranges: list[tuple[int, int]] = []
    failed: list[int] = []
    real_logs = stake_chain._Rpc.logs

    def logs(self, address, from_block, to_block, *, provider=""):
        if provider:
            ranges.append((from_block, to_block))
            if from_block > first + 2 and not failed:  # the RPC fails once, after the first stake was read
                failed.append(from_block)
                raise ChainUnavailable("ConnectionError from the RPC")
        return real_logs(self, address, from_block, to_block, provider=provider)

    monkeypatch.setattr(stake_chain._Rpc, "logs", logs)
    with pytest.raises(ChainUnavailable):
        stake_chain_index()
    backfill = StakeBackfill.objects.get()
    assert (backfill.last_block, backfill.done_at) == (failed[0] - 1, None)
    assert list(StakeEvent.objects.values_list("block_number", flat=True)) == [first]  # applied before the error
    assert _counted(profile) == 100 * SPON

    while StakeBackfill.objects.get().done_at is None:
        stake_chain_index()
    starts = [start for start, _end in ranges]
    # Two blocks a range from STAKING_START_BLOCK; after the error, again from the range that failed.
    assert starts == list(range(0, failed[0] + 1, 2)) + list(range(failed[0], cursor + 1, 2))
    assert all(end - start <= 1 for start, end in ranges) and ranges[-1][1] == cursor
    assert list(StakeEvent.objects.order_by("block_number").values_list("kind", flat=True)) == [
        "stake",
        "stake",
        "unstake",
    ]
    assert _counted(profile) == 250 * SPON
    assert [p.amount for p in stake_pending(provider=profile, address=STAKER.address)] == [50 * SPON]


def test_a_second_indexer_during_the_backfill_does_not_count_twice(home, provider, monkeypatch):
    node, _chain = home
    profile, _machine = provider
    _stake(node, STAKER, 300 * SPON)
    _finalize(node)
    stake_chain_index()
    stake_link(profile.user, STAKER.address)
    real_logs = stake_chain._Rpc.logs
    inner: list[object] = []

    def logs(self, address, from_block, to_block, *, provider=""):
        found = real_logs(self, address, from_block, to_block, provider=provider)
        if provider and not inner:  # another run does the whole back-fill between our read and our write
            inner.append(None)
            inner[0] = stake_chain_index()
        return found

    monkeypatch.setattr(stake_chain._Rpc, "logs", logs)
    outer = stake_chain_index()
    assert (inner[0].backfilled, outer.backfilled) == (1, 0)
    assert _counted(profile) == 300 * SPON and StakeEvent.objects.count() == 1


def test_a_link_made_while_the_forward_scan_reads_leaves_the_address_to_its_backfill(home, provider, monkeypatch):
    """The forward scan must not apply a later event of the address before the back-fill applied the
    earlier ones: an unstake replayed before its stake would take nothing from active stake."""
    node, _chain = home
    profile, _machine = provider
    _stake(node, STAKER, 300 * SPON)
    _finalize(node)
    stake_chain_index()  # the stake is passed over: not linked
    _unstake(node, 100 * SPON)
    _finalize(node)
    real_logs = stake_chain._Rpc.logs

    def logs(self, address, from_block, to_block, *, provider=""):
        found = real_logs(self, address, from_block, to_block, provider=provider)
        if not provider and not WalletLink.objects.exists():
            stake_link(profile.user, STAKER.address)  # the provider links between the read and the apply
        return found

    monkeypatch.setattr(stake_chain._Rpc, "logs", logs)
    result = stake_chain_index()
    assert (result.recorded, result.ignored) == (0, 1)  # the unstake waits for the back-fill
    monkeypatch.undo()
    assert stake_chain_index().backfilled == 2
    assert list(StakeEvent.objects.order_by("id").values_list("kind", flat=True)) == ["stake", "unstake"]
    assert _counted(profile) == 200 * SPON
    assert [p.amount for p in stake_pending(provider=profile, address=STAKER.address)] == [100 * SPON]


def test_relinking_an_address_backfills_the_events_made_while_it_was_unlinked(home, provider):
    node, _chain = home
    profile, _machine = provider
    stake_link(profile.user, STAKER.address)
    _stake(node, STAKER, 300 * SPON)
    _finalize(node)
    stake_chain_index()
    assert _counted(profile) == 300 * SPON

    WalletLink.objects.filter(address=STAKER.address).update(revoked_at=timezone.now())
    _unstake(node, 100 * SPON)
    _finalize(node)
    assert stake_chain_index().ignored == 1
    assert _counted(profile) == 300 * SPON  # unlinked: what was mirrored stays, later events are ignored

    stake_link(profile.user, STAKER.address)
    result = stake_chain_index()
    assert (result.recorded, result.backfilled) == (1, 1)  # only the unstake: the stake was mirrored already
    assert _counted(profile) == 200 * SPON
    assert [p.amount for p in stake_pending(provider=profile, address=STAKER.address)] == [100 * SPON]
    assert StakeEvent.objects.count() == 2


# --- Indexers in threads (PostgreSQL row locks) --------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _reference_data_back_after_the_last_test(django_db_setup, django_db_blocker):
    """As in tests/billing/test_concurrency.py: a transactional test empties every table; put the
    reference data (GPU models, regions) back for a reused test database."""
    yield
    contents = getattr(connection, "_test_serialized_contents", None)
    if contents and connection.vendor == "postgresql":
        with django_db_blocker.unblock():
            connection.creation.deserialize_db_from_string(contents)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@requires_postgresql("for row locks between the indexer threads")
def test_indexers_running_at_once_count_each_event_once_in_chain_order(home, provider):
    node, _chain = home
    profile, machine = provider
    _stake(node, STAKER, 300 * SPON)
    _finalize(node)
    stake_chain_index()  # passed over: not linked yet
    stake_link(profile.user, STAKER.address)
    _unstake(node, 100 * SPON)  # after linking: the forward scan's or the back-fill's, never both
    _stake(node, STAKER, 50 * SPON)
    _finalize(node)

    barrier = threading.Barrier(THREADS)
    errors: list[str] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            stake_chain_index()
        except Exception:  # noqa: BLE001 - every failure is reported by the test
            errors.append(traceback.format_exc())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "an indexer hung (lock wait?)"
    assert errors == []
    stake_chain_index()

    rows = StakeEvent.objects.order_by("id").values_list("kind", "amount")
    assert [(kind, int(amount)) for kind, amount in rows] == [
        ("stake", 300 * SPON),
        ("unstake", 100 * SPON),
        ("stake", 50 * SPON),
    ]
    assert _counted(profile) == 250 * SPON
    assert [p.amount for p in stake_pending(provider=profile, address=STAKER.address)] == [100 * SPON]
    machine.refresh_from_db()
    assert machine.stake_covered
