"""The services queue tasks by name (marketplace.deployments.dispatch), never importing tasks.py."""

from __future__ import annotations

import re
from pathlib import Path

from celery import current_app

from marketplace.deployments.dispatch import enqueue

ROOT = Path(__file__).resolve().parent.parent.parent


def test_every_task_name_the_services_queue_is_a_task_celery_knows():
    from marketplace import tasks  # noqa: F401 - registers the tasks, as the worker's autodiscovery does

    queued = {
        name
        for path in (ROOT / "marketplace").rglob("*.py")
        if path.name != "tasks.py"
        for name in re.findall(r"""enqueue\(\s*["']([\w.]+)["']""", path.read_text(encoding="utf-8"))
    }
    assert {
        "marketplace.tasks.match_order",
        "marketplace.tasks.fail_node_leases",
        "marketplace.tasks.simulate_demo_lease",
    } <= queued
    assert sorted(name for name in queued if name not in current_app.tasks) == []


def test_a_task_this_process_has_not_loaded_is_sent_by_name_and_no_result_is_awaited(monkeypatch):
    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **options: sent.append((name, options)))
    enqueue("marketplace.tasks.not_loaded_here", 7, "x", countdown=3)
    assert sent == [("marketplace.tasks.not_loaded_here", {"args": (7, "x"), "countdown": 3, "ignore_result": True})]
