"""500 orders against ~150 GPUs, matched by two real Celery worker processes on PostgreSQL + Redis:
no node is ever over-allocated, every order ends matched or failed, and the ledger balances.

The orders are created through `deployment_create` (funded renters, holds, `match_order`
enqueued on commit to the real broker) before the workers start, so both workers race through the
orders, a batch each at a time (MATCH_BATCH_SIZE), for the same cheap nodes. Orders that find
nothing wait until their deadline (MATCH_TIMEOUT_SECONDS, 5 s here) and then fail; the test plays
the beat's part and enqueues `sweep_open_orders` every second, as
`CELERY_BEAT_SCHEDULE["sweep-open-orders"]` does in production.

Needs PostgreSQL (row locks and concurrent writers; SQLite serialises writers, so there is no race)
and Redis (the broker the workers share). Without them the test skips; under CI=true it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest
from django.db.models import Count
from spheron_sdk.matching import verify_match

from billing.models import Hold
from billing.selectors import cached_balances_mismatch, ledger_total, user_balances
from marketplace.deployments import services as deployments
from marketplace.matching import candidates
from marketplace.matching import proof as match_proofs
from marketplace.models import Deployment, DeploymentStatus, Lease, LeaseStatus, MatchRecord, Order, OrderStatus
from providers import capacity as node_capacity
from providers.models import Node, NodeStatus
from spheron_web.celery import app
from tests.deployments.conftest import fund
from tests.factories import make_node, make_provider, make_user
from tests.integration.processes import celery_worker_command, require_postgresql_and_redis, shared_env, spawn, stop

ORDERS = 500
RENTERS = 50  # ten deployments each: matches of one renter contend for that renter's ledger rows
WORKERS = 2
TIMEOUT_SECONDS = 5  # MATCH_TIMEOUT_SECONDS, in this process (order deadlines) and in the workers
BATCH_SIZE = 3  # MATCH_BATCH_SIZE in the workers: small, so that the two interleave many batches
MAX_WAIT_SECONDS = 60
# Every order: one GPU of any model, 2 cores, 4 GB, 20 GB disk, provider mode, at most $3.00/h.
NEED = {"gpus": 1, "cpu": 2, "memory": 4, "storage": 20}
MAX_PRICE = 3_000_000
SPEC = {
    "version": "2.0",
    "services": {
        "job": {
            "image": "python:3.12-slim",
            "command": ["python", "-c", "print('hi')"],
            "resources": {
                "cpu": {"units": 2},
                "memory": {"size": "4Gi"},
                "storage": [{"size": "20Gi"}],
                "gpu": {"units": 1},
            },
            "price": {"token": "USD", "amount": "3.00"},
        }
    },
    "deployment": {"duration": "24h", "mode": "provider"},
}

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def postgresql_and_redis() -> None:
    require_postgresql_and_redis(
        postgresql="for row locks and concurrent writers", redis="the broker the two workers share"
    )


def _slots(node: Node) -> int:
    """How many of these orders fit on the node's free capacity."""
    return min(
        node.available_gpus // NEED["gpus"],
        node.available_cpu_cores // NEED["cpu"],
        node.available_memory_gb // NEED["memory"],
        node.available_storage_gb // NEED["storage"],
    )


def build_market() -> tuple[set[int], int]:
    """60 eligible provider-mode nodes with 1–4 GPUs (150 GPUs), some short of CPU, memory or disk,
    plus nodes no order may use. Returns the eligible node ids and how many orders they can take."""
    providers = [make_provider(display_name=f"Concurrency DC {n}") for n in range(6)]
    regions = ["us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast"]
    models = ["h100", "a100-80g", "l40s"]
    eligible = []
    for n in range(60):
        gpus = n % 4 + 1
        shape = {"cpu_cores": 16 * gpus, "memory_gb": 64 * gpus, "storage_gb": 500 * gpus}
        # Some run out of cores, memory or disk before GPUs: capacity is not just the GPU count.
        if n % 10 == 3:
            shape["cpu_cores"] = 6  # room for 3 orders
        elif n % 10 == 7:
            shape["memory_gb"] = 8  # room for 2
        elif n % 20 == 11:
            shape["storage_gb"] = 40  # room for 2
        eligible.append(
            make_node(
                provider=providers[n % len(providers)],
                mode="provider",
                trust_tier=n % 3 + 1,
                gpu_model=models[n % len(models)],
                gpu_count=gpus,
                region=regions[n % len(regions)],
                # Many share a price, so both workers want the same few cheapest nodes first.
                gpu_price_per_hour_micros=800_000 + 100_000 * (n % 7),
                uptime_30d=0.97 + 0.0005 * (n % 50),
                **shape,
            )
        )
    # Cheap, free and unusable: each breaks one rule.
    unusable = {"status": NodeStatus.OFFLINE, "gpu_price_per_hour_micros": 100_000}
    make_node(provider=providers[0], mode="provider", trust_tier=1, gpu_model="h100", gpu_count=4, **unusable)
    for broken in (
        {"in_maintenance": True},
        {"stake_covered": False},
        {"gpu_price_per_hour_micros": 3_500_000},  # dearer than every order's max
        {"available_gpus": 0},
    ):
        fields = {"gpu_price_per_hour_micros": 100_000, **broken}
        make_node(provider=providers[1], mode="provider", trust_tier=1, gpu_model="h100", gpu_count=4, **fields)
    make_node(provider=providers[2], mode="fizz", trust_tier=4, gpu_model="rtx4090", gpu_price_per_hour_micros=50_000)
    make_node(provider=providers[3], mode="provider", trust_tier=1, gpu_model="h100", gpu_count=4,
              cpu_cores=1, gpu_price_per_hour_micros=100_000)  # fmt: skip
    capacity = sum(_slots(node) for node in eligible)
    return {node.id for node in eligible}, capacity


def start_worker(index: int, log_dir: Path) -> tuple[subprocess.Popen, Path]:
    log = log_dir / f"worker-{index}.log"
    env = shared_env(MATCH_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS), MATCH_BATCH_SIZE=str(BATCH_SIZE))
    command = celery_worker_command(f"match-{index}-{os.getpid()}@%h", "--prefetch-multiplier=1")
    return spawn(command, env=env, log=log), log


def unfinished() -> int:
    return Order.objects.filter(status__in=[OrderStatus.OPEN, OrderStatus.MATCHING]).count()


def test_two_workers_match_500_orders_without_over_allocating(postgresql_and_redis, settings):
    settings.MATCH_TIMEOUT_SECONDS = TIMEOUT_SECONDS
    app.control.purge()  # nothing left over from an earlier, interrupted run
    eligible, capacity = build_market()
    assert 100 < capacity < ORDERS, capacity  # scarce: some orders must fail

    renters = [make_user(is_developer=True) for _ in range(RENTERS)]
    for renter in renters:
        fund(renter, 1_000)
    started = time.monotonic()
    for n in range(ORDERS):
        deployments.deployment_create(user=renters[n % RENTERS], source=SPEC)
    created_in = time.monotonic() - started
    assert Order.objects.filter(status=OrderStatus.OPEN).count() == ORDERS  # none matched yet
    # The orders queued a matchmaker task on commit; it is queued again once both workers are up,
    # so that neither drains the batches alone while the other is still starting.
    app.control.purge()
    deployments.kick_clear()

    with tempfile.TemporaryDirectory(prefix="match-workers-") as log_dir:
        workers = [start_worker(index, Path(log_dir)) for index in range(WORKERS)]
        try:
            ready_by = time.monotonic() + 60
            while not all(" ready." in log.read_text() for _, log in workers) and time.monotonic() < ready_by:
                assert all(process.poll() is None for process, _ in workers), "a worker died while starting"
                time.sleep(0.2)
            deployments.kick()
            deadline = time.monotonic() + MAX_WAIT_SECONDS
            while unfinished() and time.monotonic() < deadline:
                if any(process.poll() is not None for process, _ in workers):
                    break
                time.sleep(1)
                # The beat's sweep: orders that waited for capacity are failed after their deadline.
                app.send_task("marketplace.tasks.sweep_open_orders")
            left = unfinished()
        finally:
            stop([process for process, _ in workers])
        logs = [log.read_text() for _, log in workers]
    matched_in = time.monotonic() - started - created_in
    report = "\n".join(f"--- worker {n} ---\n{text[-3000:]}" for n, text in enumerate(logs))
    assert left == 0, f"{left} orders still open or matching after {MAX_WAIT_SECONDS} s\n{report}"
    for n, text in enumerate(logs):
        batches = re.findall(r"marketplace\.tasks\.match_order\[[^\]]+\] succeeded in [\d.]+s: (\d+)", text)
        assert any(int(count) for count in batches), f"worker {n} matched nothing in its batches\n{report}"
        assert "Traceback" not in text, report

    # Every order ended matched or failed, and the deployment with it.
    statuses = dict(Order.objects.values_list("status").annotate(n=Count("id")))
    matched, failed = statuses.get(OrderStatus.MATCHED, 0), statuses.get(OrderStatus.FAILED, 0)
    assert matched + failed == ORDERS, statuses
    assert matched == min(ORDERS, capacity), (matched, capacity, f"created in {created_in:.1f} s")
    assert Deployment.objects.filter(status=DeploymentStatus.MATCHED).count() == matched
    assert Deployment.objects.filter(status=DeploymentStatus.FAILED).count() == failed
    assert not Order.objects.filter(status=OrderStatus.FAILED, failure_reason="").exists()

    # Zero over-allocation: on every node the active leases fit, and what is free is the rest.
    used: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    leases = list(Lease.objects.filter(status=LeaseStatus.ACTIVE).select_related("node"))
    assert len(leases) == matched and len({lease.deployment_id for lease in leases}) == matched
    for lease in leases:
        total = used[lease.node_id]
        for i, amount in enumerate((lease.gpus, lease.cpu_cores, lease.memory_gb, lease.storage_gb)):
            total[i] += amount
        # Each lease is on a node the order allowed, at that node's price for the order's share.
        assert lease.node_id in eligible, f"lease {lease.id} on ineligible node {lease.node_id}"
        request = candidates.Request.from_spec(lease.deployment.spec)
        assert lease.price_per_hour_micros == node_capacity.lease_price(lease.node, request) <= MAX_PRICE
    for node in Node.objects.all():
        gpus, cpu, memory, storage = used[node.id]
        totals = (node.gpu_count, node.cpu_cores, node.memory_gb, node.storage_gb)
        free = (node.available_gpus, node.available_cpu_cores, node.available_memory_gb, node.available_storage_gb)
        if node.id not in eligible:
            assert (gpus, cpu, memory, storage) == (0, 0, 0, 0), node
            continue
        assert gpus <= node.gpu_count and cpu <= node.cpu_cores, node
        assert memory <= node.memory_gb and storage <= node.storage_gb, node
        assert free == tuple(t - u for t, u in zip(totals, (gpus, cpu, memory, storage), strict=True)), node
        assert min(free) >= 0 and _slots(node) == 0, f"node {node.id} still has room and orders failed"

    # Every match is recorded and recomputes; every winner was reserved exactly once.
    records = list(MatchRecord.objects.select_related("order__deployment"))
    assert len(records) == matched
    assert all(verify_match(match_proofs.match_proof(record))["ok"] for record in records)

    # Money: nothing created or lost, the order holds are all gone, each lease holds 24 h at its price.
    assert ledger_total() == 0
    assert not cached_balances_mismatch().exists()
    assert not Hold.objects.filter(reference_type="deployment", status=Hold.Status.ACTIVE).exists()
    held: dict[int, int] = defaultdict(int)
    for lease in leases:
        held[lease.deployment.owner_id] += lease.price_per_hour_micros * 24
    for renter in renters:
        balances = user_balances(user=renter)
        assert balances.reserved == held[renter.id], renter
        assert balances.available + balances.reserved == 1_000_000_000, renter
    print(
        f"\n{ORDERS} orders created in {created_in:.1f} s; {matched} matched, {failed} failed "
        f"(capacity {capacity}) by {WORKERS} workers in {matched_in:.1f} s"
    )
