"""Celery tasks: thin adapters that call the services. Only Celery imports this module: the services
queue these tasks by name (marketplace.deployments.dispatch), so each `name=` below must not change."""

from __future__ import annotations

import time
from datetime import datetime

from celery import shared_task

from marketplace.catalog.selectors import market_board_refresh
from marketplace.deployments import commitments
from marketplace.deployments import services as deployments


@shared_task(name="marketplace.tasks.refresh_market_board", acks_late=True, ignore_result=True)
def refresh_market_board() -> int:
    return market_board_refresh()


MATCH_TASK_SECONDS = 2.0  # a match_order task stops starting batches after this long and queues its successor


@shared_task(name="marketplace.tasks.match_order", acks_late=True, ignore_result=True)
def match_order(*_queued_order_id: int) -> int:
    """The matchmaker: batches of the due orders, oldest first (MATCH_BATCH_SIZE each, one
    transaction each; see marketplace.deployments.services.match_orders), for as long as each batch comes back
    full and for at most MATCH_TASK_SECONDS; then it queues its successor, so other tasks get the
    worker in between. New orders queue it on commit, once until a worker starts it
    (`deployments.kick`). Its first full batch also queues one more task as soon as the orders are
    claimed, so an idle worker joins in. Returns the number matched.

    Callers send no arguments. A message queued by a version before the batch matchmaker carries an
    order id (one task per order); it is accepted and ignored, since that order is due and a batch
    takes it."""
    deployments.kick_clear()
    deadline = time.monotonic() + MATCH_TASK_SECONDS
    helped, matched = False, 0
    while True:
        full = False

        def on_full() -> None:
            nonlocal full, helped
            full = True
            if not helped:
                helped = True
                match_order.delay()

        outcomes = deployments.match_due_orders(on_full=on_full)
        matched += sum(outcome.status == "matched" for outcome in outcomes.values())
        if not full:
            return matched
        if time.monotonic() >= deadline:
            match_order.delay()
            return matched


@shared_task(name="marketplace.tasks.sweep_open_orders", acks_late=True, ignore_result=True)
def sweep_open_orders() -> int:
    return deployments.open_orders_sweep()


@shared_task(name="marketplace.tasks.expire_deployments", acks_late=True, ignore_result=True)
def expire_deployments() -> int:
    return deployments.deployments_expire()


@shared_task(name="marketplace.tasks.fail_node_leases", acks_late=True, ignore_result=True)
def fail_node_leases(node_id: int, last_good_iso: str) -> int:
    return deployments.node_leases_fail(node_id=node_id, last_good=datetime.fromisoformat(last_good_iso))


@shared_task(name="marketplace.tasks.simulate_demo_lease", acks_late=True, ignore_result=True)
def simulate_demo_lease(lease_id: int) -> bool:
    return deployments.demo_lease_simulate(lease_id)


@shared_task(name="marketplace.tasks.publish_commitments", acks_late=True, ignore_result=True)
def publish_commitments() -> int:
    """Beat: match commitments to LeaseRegistry (marketplace.deployments.commitments); chain.tasks
    .send_transactions sends the batch. Returns the leases put in a batch this run."""
    return commitments.commitments_run()["published"].leases
