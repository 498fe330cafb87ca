from __future__ import annotations

import os
import subprocess
import time

import pytest
from django.conf import settings

from spheron_web.celery import app
from spheron_web.tasks import ping
from tests.integration.processes import ROOT, celery_worker_command


def test_every_periodic_task_is_registered():
    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]


def test_tasks_run_on_a_broker_not_eagerly():
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    expected = "redis" if settings.REDIS_URL else "filesystem"
    assert settings.CELERY_BROKER_URL.startswith(expected)


@pytest.mark.integration
def test_a_real_worker_process_runs_a_task():
    # A queue of its own: tasks other tests queued on commit (matching, demo agents) wait in the
    # default queue, and a worker working through them first could miss the deadline.
    queue = "pytest-ping"
    worker = subprocess.Popen(
        celery_worker_command(f"pytest-{os.getpid()}@%h", "--queues", queue),
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        result = ping.apply_async(queue=queue)
        deadline = time.monotonic() + 60
        while not result.ready() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        if not result.ready():
            worker.terminate()
            output = worker.communicate(timeout=20)[0]
            pytest.fail(f"the worker did not run the task within 60 s; worker output:\n{output[-3000:]}")
        assert result.get(timeout=5) == "pong"
    finally:
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
