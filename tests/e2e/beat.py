"""Beat's part in the browser tests: no Celery worker or beat runs in tests, so a thread calls the
real periodic work every 0.5 s, as beat and a worker would."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

from django.db import OperationalError, connections


def table_locked(exc: BaseException) -> bool:
    """SQLite's shared-cache lock, met when this thread and a live-server thread write at once."""
    return isinstance(exc, OperationalError) and "database table is locked" in str(exc)


class Beat:
    """Calls `tick` every 0.5 s in a thread of its own while the `with` block runs. A run that meets
    SQLite's shared-cache lock is tried again at the next tick, as beat would; any other error is
    kept in `errors`, for the test to assert there are none."""

    def __init__(self, tick: Callable[[], object]) -> None:
        self.tick = tick
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopping.wait(0.5):
                try:
                    self.tick()
                except Exception as exc:  # noqa: BLE001 - the test reports it
                    if not table_locked(exc):
                        self.errors.append(traceback.format_exc())
        finally:
            connections.close_all()

    def __enter__(self) -> Beat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def order_sweeper() -> Beat:
    """The beat task `marketplace.tasks.sweep_open_orders` (beat + a worker running `match_order`)."""
    from marketplace.tasks import sweep_open_orders

    return Beat(sweep_open_orders)
