"""Live-server tests on SQLite: readers that do not wait for the writer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.signals import request_started
from django.db import connections
from django.db.backends.signals import connection_created


@contextmanager
def sqlite_reads_do_not_wait() -> Iterator[None]:
    """With SQLite the test database lives in memory in shared-cache mode, and every live-server
    request thread (and the sweeper) has a connection of its own. Shared-cache table locks do not
    wait: a page polling a table that an agent's report is writing would fail at once with
    "database table is locked". Readers may read uncommitted rows instead, close to what WAL gives
    the real deployment (readers never wait for the writer).

    Set on every new connection, and at the start of every request: a keep-alive request thread
    may hold a connection opened before the test. Nothing happens on PostgreSQL."""

    def dirty_reads(sender, connection, **kwargs) -> None:
        if connection.vendor == "sqlite" and connection.is_in_memory_db() and connection.connection is not None:
            connection.connection.execute("PRAGMA read_uncommitted = 1")

    def on_request(sender, **kwargs) -> None:
        dirty_reads(sender, connections["default"])

    main = connections["default"]
    main.ensure_connection()
    dirty_reads(None, main)
    connection_created.connect(dirty_reads)
    request_started.connect(on_request)
    try:
        yield
    finally:
        request_started.disconnect(on_request)
        connection_created.disconnect(dirty_reads)
        if main.vendor == "sqlite" and main.is_in_memory_db():
            main.connection.execute("PRAGMA read_uncommitted = 0")
