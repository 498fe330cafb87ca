"""The matchmaker in batches: a worker claims MATCH_BATCH_SIZE due orders and matches them in one
transaction. Orders of one batch never share capacity that is not there, each keeps a proof that
`spheron_sdk.matching` recomputes, the queries do not grow with the batch, a bad order does not hold
up the others, and new orders wake a worker once, not once each.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from spheron_sdk.matching import verify_match

from billing.selectors import cached_balances_mismatch, ledger_total
from core import clock
from core.errors import ApplicationError
from marketplace.deployments import services as deployments
from marketplace.matching import proof as match_proofs
from marketplace.models import Deployment, DeploymentStatus, Lease, LeaseStatus, MatchRecord, Order, OrderStatus
from providers.models import Node
from tests.deployments.conftest import fund
from tests.deployments.test_matchmaker import only, spec
from tests.factories import make_node, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def renters(db):
    users = [make_user(is_developer=True) for _ in range(3)]
    for user in users:
        fund(user, 1_000)
    return users


def create(renters, count: int, **kwargs) -> list[Order]:
    return [
        deployments.deployment_create(user=renters[n % len(renters)], source=spec(**kwargs)).orders.get()
        for n in range(count)
    ]


def proof_of(order: Order) -> dict:
    record = MatchRecord.objects.select_related("order__deployment").get(order=order)
    return match_proofs.match_proof(record)


def test_a_batch_matches_every_order_with_a_proof_each(renters, settings):
    for n in range(8):
        make_node(gpu_price_per_hour_micros=150_000 + 10_000 * n, uptime_30d=0.9 + n / 100)
    orders = create(renters, 5)
    outcomes = deployments.match_orders(limit=10)
    assert set(outcomes) == {order.id for order in orders}
    assert {outcome.status for outcome in outcomes.values()} == {"matched"}
    for order in orders:
        order.refresh_from_db()
        deployment = Deployment.objects.get(id=order.deployment_id)
        lease = Lease.objects.get(order=order)
        assert order.status == OrderStatus.MATCHED and deployment.status == DeploymentStatus.MATCHED
        assert deployment.hold_id is None and deployment.ends_at == lease.started_at + timedelta(hours=24)
        assert lease.meter.hold.amount == lease.price_per_hour_micros * 24
        assert deployment.events.filter(kind="matched", lease=lease).exists()
        checked = verify_match(proof_of(order))
        assert checked["ok"] and checked["winner"] == lease.node_id
    # One-GPU nodes: five orders, five different nodes; the books balance.
    assert Lease.objects.values("node").distinct().count() == 5
    assert ledger_total() == 0 and not cached_balances_mismatch()


def test_two_orders_of_a_batch_never_share_a_node_that_fits_one(renters, settings):
    only(settings, "price")
    cheapest = make_node(gpu_price_per_hour_micros=100_000)
    second = make_node(gpu_price_per_hour_micros=150_000)
    first_order, second_order = create(renters, 2)
    deployments.match_orders(limit=10)
    # Claimed oldest first: the first order gets the cheapest node, the second the next one, and
    # the second's proof leaves out the node it could not have (it was not available to it).
    assert Lease.objects.get(order=first_order).node_id == cheapest.id
    assert Lease.objects.get(order=second_order).node_id == second.id
    proof = proof_of(second_order)
    assert cheapest.id not in [c["node_id"] for c in proof["candidates"]]
    assert verify_match(proof)["ok"]
    cheapest.refresh_from_db()
    assert cheapest.available_gpus == 0


def test_a_node_with_room_for_two_takes_two_orders_of_one_batch(renters, settings):
    only(settings, "price")
    big = make_node(gpu_price_per_hour_micros=100_000, gpu_count=2, cpu_cores=4, memory_gb=8, storage_gb=40)
    make_node(gpu_price_per_hour_micros=200_000)
    orders = create(renters, 3)  # each: 1 GPU, 2 cores, 4 GB, 20 GB
    deployments.match_orders(limit=10)
    on_big = Lease.objects.filter(node=big, status=LeaseStatus.ACTIVE)
    assert sorted(lease.order_id for lease in on_big) == [orders[0].id, orders[1].id]
    big.refresh_from_db()
    assert (big.available_gpus, big.available_cpu_cores, big.available_memory_gb, big.available_storage_gb) == (
        0, 0, 0, 0,
    )  # fmt: skip
    assert Lease.objects.get(order=orders[2]).node_id != big.id


def test_an_order_waiting_for_capacity_is_not_claimed_again_before_its_retry_time(renters, settings):
    settings.MATCH_RETRY_SECONDS = 5
    (order,) = create(renters, 1)
    tried_at = clock.now()
    assert deployments.match_orders(limit=10, now=tried_at)[order.id].status == "waiting"
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN and order.retry_at == tried_at + timedelta(seconds=5)
    make_node()
    assert deployments.match_orders(limit=10) == {}  # not due yet
    clock.advance(5)
    assert deployments.match_orders(limit=10)[order.id].status == "matched"


def test_the_batch_takes_the_oldest_due_orders_and_says_when_it_was_full(renters, settings):
    for _ in range(4):
        make_node()
    orders = create(renters, 4)
    full = []
    first = deployments.match_orders(limit=3, on_full=lambda: full.append(1))
    assert set(first) == {order.id for order in orders[:3]} and full == [1]
    rest = deployments.match_orders(limit=3, on_full=lambda: full.append(2))
    assert set(rest) == {orders[3].id} and full == [1]


def test_queries_do_not_grow_with_the_batch(renters, settings):
    for n in range(12):
        make_node(gpu_price_per_hour_micros=150_000 + 1_000 * n)
    create(renters, 2)
    with CaptureQueriesContext(connection) as two:
        assert len(deployments.match_orders(limit=10)) == 2
    create(renters, 6)
    with CaptureQueriesContext(connection) as six:
        assert len(deployments.match_orders(limit=10)) == 6
    assert len(six) == len(two), [q["sql"][:80] for q in six.captured_queries]


def test_a_batch_that_fails_is_matched_one_order_at_a_time(renters, settings, monkeypatch, caplog):
    """One order whose lease cannot be written (a billing refusal) rolls its batch back; the
    others are then matched on their own, and the bad one stays open for a later try."""
    for n in range(4):
        make_node(gpu_price_per_hour_micros=150_000 + 10_000 * n)
    good, bad, other = create(renters, 3)
    real = deployments.leases_start

    def refuse_the_bad_one(starts, *, now):
        if any(s.order.id == bad.id for s in starts):
            raise ApplicationError("This hold is closed.", status=409)
        return real(starts, now=now)

    monkeypatch.setattr(deployments, "leases_start", refuse_the_bad_one)
    outcomes = deployments.match_orders(limit=10)
    assert {order_id: outcome.status for order_id, outcome in outcomes.items()} == {
        good.id: "matched",
        other.id: "matched",
    }
    bad.refresh_from_db()
    assert bad.status == OrderStatus.OPEN and not Lease.objects.filter(order=bad).exists()
    assert sum(Node.objects.values_list("available_gpus", flat=True)) == 2  # the bad one's reservation rolled back
    assert "matching a batch of 3 orders failed" in caplog.text
    # It waits like an order without a node, so the next batch does not claim it again at once.
    assert bad.retry_at is not None and bad.retry_at > clock.now()
    assert deployments.match_orders(limit=10) == {}
    assert ledger_total() == 0 and not cached_balances_mismatch()


def test_new_orders_wake_one_worker_not_one_each(renters, monkeypatch, django_capture_on_commit_callbacks):
    from marketplace import tasks

    sent = []
    monkeypatch.setattr(tasks.match_order, "delay", lambda: sent.append(1))
    deployments.kick_clear()
    with django_capture_on_commit_callbacks(execute=True):
        create(renters, 3)
    assert sent == [1]
    # The task clears the wake-up as it starts, before it claims: an order after that wakes again.
    monkeypatch.setattr(deployments, "match_due_orders", lambda **kwargs: {})
    tasks.match_order()
    with django_capture_on_commit_callbacks(execute=True):
        create(renters, 1)
    assert sent == [1, 1]


def _queue_of_tasks(renters, settings, monkeypatch, orders: int) -> list[int]:
    """`orders` orders on as many nodes, batches of 2, and the tasks the `match_order` task queues."""
    from marketplace import tasks

    settings.MATCH_BATCH_SIZE = 2
    for _ in range(orders):
        make_node()
    create(renters, orders)
    sent: list[int] = []
    monkeypatch.setattr(tasks.match_order, "delay", lambda: sent.append(1))
    return sent


def test_the_task_matches_batches_while_they_come_back_full_and_calls_in_help(renters, settings, monkeypatch):
    from marketplace import tasks

    sent = _queue_of_tasks(renters, settings, monkeypatch, orders=5)
    # Batches of 2, 2 and 1: the first full one queues one more task (an idle worker joins in),
    # the short last one ends the loop.
    assert tasks.match_order() == 5 and sent == [1]
    assert Order.objects.filter(status=OrderStatus.MATCHED).count() == 5
    assert tasks.match_order() == 0 and sent == [1]  # nothing due: nothing more queued


def test_the_task_hands_over_to_a_successor_after_its_time(renters, settings, monkeypatch):
    from marketplace import tasks

    sent = _queue_of_tasks(renters, settings, monkeypatch, orders=3)
    monkeypatch.setattr(tasks, "MATCH_TASK_SECONDS", 0)
    # One full batch, then out of time: the helper and the successor are queued.
    assert tasks.match_order() == 2 and sent == [1, 1]
    assert tasks.match_order() == 1 and sent == [1, 1]
    assert Order.objects.filter(status=OrderStatus.MATCHED).count() == 3


def test_a_task_queued_by_an_older_version_with_an_order_id_still_matches(renters, settings, monkeypatch):
    """Versions before the batch matchmaker queued one task per order, with its id: such a message
    left in the queue runs as today's task (the order is due, a batch takes it) instead of failing."""
    from marketplace import tasks

    sent = _queue_of_tasks(renters, settings, monkeypatch, orders=1)
    order = Order.objects.get()
    result = tasks.match_order.apply(args=[order.id])  # as a worker runs a queued message
    assert result.successful() and result.get() == 1 and sent == []
    order.refresh_from_db()
    assert order.status == OrderStatus.MATCHED


def test_the_sweep_matches_due_orders_in_batches(renters, settings):
    from marketplace.tasks import sweep_open_orders

    settings.MATCH_BATCH_SIZE = 2
    for _ in range(5):
        make_node()
    create(renters, 5)
    assert sweep_open_orders() == 5
    assert Order.objects.filter(status=OrderStatus.MATCHED).count() == 5


def test_a_batch_with_a_free_lease_beside_paid_ones_starts_them_all_in_one_path(renters, settings):
    """leases_start is the one implementation: a free node's lease has no meter and its
    deployment's hold goes back to the renter; the paid leases of the same batch swap theirs."""
    only(settings, "price")
    free = make_node(
        gpu_price_per_hour_micros=0,
        cpu_price_per_core_month_micros=0,
        memory_price_per_gb_month_micros=0,
        storage_price_per_gb_month_micros=0,
    )
    paid = [make_node(gpu_price_per_hour_micros=150_000 + n) for n in range(2)]
    orders = create(renters, 3)
    outcomes = deployments.match_orders(limit=10)
    assert {outcome.status for outcome in outcomes.values()} == {"matched"}
    leases = {lease.node_id: lease for lease in Lease.objects.filter(order__in=orders)}
    assert set(leases) == {free.id, *(node.id for node in paid)}
    assert leases[free.id].price_per_hour_micros == 0 and leases[free.id].meter_id is None
    for node in paid:
        assert leases[node.id].meter.hold.amount == leases[node.id].price_per_hour_micros * 24
    for order in orders:
        deployment = Deployment.objects.get(id=order.deployment_id)
        assert deployment.status == DeploymentStatus.MATCHED and deployment.hold_id is None
        assert deployment.events.filter(kind="matched").count() == 1
    assert ledger_total() == 0 and not cached_balances_mismatch()
