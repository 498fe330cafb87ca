"""Failover measured on a real `fizz` agent process (issue 18, point 3): the agent runs a lease and
is killed; the liveness fold (run here every LIVENESS_FOLD seconds, as beat would) finds it silent,
the renter's page says so at once with the cost stopped, and the lease fails over within the grace
plus one fold of the last heartbeat. The node's capacity stays taken until an agent there says the
workload is gone.

No Celery worker runs: the check `node_went_offline` schedules goes to the broker unread, so the
failover measured here is the fold's own sweep, the path that must hold when a task is lost.
"""

from __future__ import annotations

import re
import sys
import time

import psutil
import pytest
from django.db import OperationalError
from django.test import Client

from marketplace.deployments import services as deployments
from marketplace.models import Lease, LeaseStatus
from providers import liveness
from providers.models import Node
from tests.deployments.conftest import fund
from tests.factories import make_user
from tests.integration.agents import Agent, kill_with_workloads, online_node, staked_provider, wait_for
from tests.live_sqlite import sqlite_reads_do_not_wait

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("fizz_agent"),
]

GRACE, OFFLINE_AFTER, FOLD = 4, 2, 1.0
TOLERANCE = 1.0  # a fold that runs late on a busy machine, the database write of the failover
SLEEPER = "import time; print('up', flush=True); time.sleep(600)"


def spec() -> str:
    return f"""version: "2.0"
services:
  sleeper:
    image: python:3.12-slim
    command: ["{sys.executable}", "-c", "{SLEEPER}"]
    resources:
      cpu: {{units: 1}}
      memory: {{size: 1Gi}}
      storage: [{{size: 1Gi}}]
    price: {{token: USD, amount: 0.05}}
deployment:
  duration: 1h
  mode: fizz
  tiers: [community]
"""


@pytest.fixture
def short_liveness(settings, live_server):
    settings.NODE_HEARTBEAT_INTERVAL_SECONDS = 1
    settings.NODE_CHALLENGES_PER_HOUR = 0
    settings.NODE_OFFLINE_AFTER_SECONDS = OFFLINE_AFTER
    settings.FAILOVER_GRACE_SECONDS = GRACE
    settings.LEASE_STOP_TIMEOUT_SECONDS = 3600  # only the agent frees the node here
    return live_server.url


@pytest.fixture(autouse=True)
def _sqlite_reads_do_not_wait(transactional_db):
    """Readers do not wait for the agent's writes on SQLite (tests.live_sqlite)."""
    with sqlite_reads_do_not_wait():
        yield


@pytest.fixture
def node_token(db):
    from providers import services

    provider = staked_provider(make_user(is_provider=True))
    return services.node_token_create(provider=provider, label="this machine")[1]


def fold() -> dict[str, int]:
    """One beat of the liveness fold; SQLite's shared-cache lock against a live-server thread is
    met by trying again, as the next beat would."""
    for _ in range(20):
        try:
            return liveness.fold_heartbeats()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    raise AssertionError("the fold never got the database")


def free_cores(node_id: int) -> int:
    return Node.objects.get(id=node_id).available_cpu_cores


def test_a_killed_agent_fails_over_within_the_grace_plus_one_fold(short_liveness, node_token, tmp_path):
    agent = Agent(short_liveness, node_token, tmp_path / "fizz").start()
    try:
        node = wait_for(online_node, what="the node to come online")
        renter = make_user(email="renter@example.test")
        fund(renter, 20)
        deployment = deployments.deployment_create(user=renter, source=spec())
        lease = deployments.match_order(order_id=deployment.orders.get().id).lease
        assert lease is not None and lease.node_id == node.id, agent.output()
        wait_for(lambda: Lease.objects.get(id=lease.id).agent_state == "running", timeout=30,
                 what="the agent to run the workload")  # fmt: skip
        cores_in_use = node.cpu_cores - free_cores(node.id)
        assert cores_in_use == 1

        kill_with_workloads(agent)
        last_heartbeat = liveness.last_heartbeats([node.id])[node.id]["at"]

        page = Client()
        page.force_login(renter)
        seen_silent = None
        while Lease.objects.get(id=lease.id).status == LeaseStatus.ACTIVE:
            stats = fold()
            if stats["offline"] and seen_silent is None:
                # The renter is told at once, with the time, and the cost no longer moves.
                html = page.get(f"/deployments/{deployment.id}/").content.decode()
                seen_silent = html
                assert f"stopped responding at {last_heartbeat:%H:%M:%S} UTC" in html
                assert 'data-testid="cost-frozen"' in html
                cost = re.search(r'data-testid="cost-so-far">([^<]+)', html).group(1)
                time.sleep(0.5)
                later = page.get(f"/deployments/{deployment.id}/").content.decode()
                assert re.search(r'data-testid="cost-so-far">([^<]+)', later).group(1) == cost
            assert (time.time() - last_heartbeat.timestamp()) < GRACE + FOLD + 10, "no failover"
            time.sleep(FOLD)
        assert seen_silent is not None, "the page never showed the node silent"

        lease.refresh_from_db()
        delay = (lease.ended_at - last_heartbeat).total_seconds()
        print(f"failed over {delay:.2f} s after the last heartbeat (grace {GRACE} s, fold {FOLD} s)")
        assert GRACE <= delay <= GRACE + FOLD + TOLERANCE, f"failed over {delay:.1f} s after the last heartbeat"
        message = deployment.events.get(kind="node_failed").message
        silent = int(re.search(r"silent (\d+) s, longer than the 4 s grace", message).group(1))
        assert silent == int(delay)
        assert deployment.orders.filter(attempt=2).exists()  # looking for another node

        # The dead node's capacity stays taken: nobody has confirmed that the workload stopped.
        assert node.cpu_cores - free_cores(node.id) == 1
        agent.start()  # the machine comes back; its agent no longer runs the lease
        wait_for(lambda: free_cores(node.id) == node.cpu_cores, timeout=30, what="the capacity to come back")
        lease.refresh_from_db()
        assert lease.capacity_released_at > lease.ended_at
    finally:
        if agent.process and agent.process.poll() is None:
            kill_with_workloads(agent)


def test_a_closed_lease_keeps_the_node_until_the_workload_is_gone(short_liveness, node_token, tmp_path):
    """The agent dies alone (its workload, in a session of its own, runs on); the renter closes the
    deployment. Nobody can confirm the stop, so the node stays full; the restarted agent stops the
    leftover before its first heartbeat, and the heartbeat without the lease frees the node."""
    from spheron_sdk.fizz.config import ConfigDir

    home = tmp_path / "fizz"
    agent = Agent(short_liveness, node_token, home).start()
    try:
        node = wait_for(online_node, what="the node to come online")
        renter = make_user(email="renter@example.test")
        fund(renter, 20)
        deployment = deployments.deployment_create(user=renter, source=spec())
        lease = deployments.match_order(order_id=deployment.orders.get().id).lease

        def recorded_pid() -> int | None:
            leases = (ConfigDir(home).load_state() or {}).get("leases") or []
            return next((item["handle"]["pid"] for item in leases if item.get("handle")), None)

        workload = psutil.Process(wait_for(recorded_pid, timeout=30, what="the workload to run"))
        agent.kill()  # the agent alone: its workload runs on
        deployments.deployment_close(deployment=deployment)
        time.sleep(1)
        assert workload.is_running() and workload.status() != psutil.STATUS_ZOMBIE
        assert node.cpu_cores - free_cores(node.id) == 1  # still taken: the old workload runs there

        agent.start()
        wait_for(lambda: free_cores(node.id) == node.cpu_cores, timeout=30, what="the capacity to come back")
        assert not workload.is_running() or workload.status() == psutil.STATUS_ZOMBIE
        lease.refresh_from_db()
        assert lease.capacity_released_at is not None and lease.agent_state_shown == "stopped"
    finally:
        if agent.process and agent.process.poll() is None:
            kill_with_workloads(agent)
