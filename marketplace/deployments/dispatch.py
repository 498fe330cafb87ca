"""Queue the marketplace's Celery tasks by name, so that the services never import tasks.py (the
tasks import the services; only Celery imports the tasks)."""

from __future__ import annotations

from celery import current_app


def enqueue(name: str, *args, countdown: int | None = None) -> None:
    """Queue the task called `name` (its `name=` in marketplace/tasks.py) with `args`, to run after
    `countdown` seconds if given. Through the task object when this process has loaded it (a
    worker, or a test that replaced its `delay`/`apply_async`), else as a message by name: the same
    message either way."""
    task = current_app.tasks.get(name)
    if task is None:
        # ignore_result as the tasks declare it: else this process would wait on a result channel.
        current_app.send_task(name, args=args, countdown=countdown, ignore_result=True)
    elif countdown is None:
        task.delay(*args)
    else:
        task.apply_async(args, countdown=countdown)
