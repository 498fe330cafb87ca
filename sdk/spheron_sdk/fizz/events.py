"""Lease events: batched in memory and delivered by a background thread.

Runtimes report through `EventQueue.add_event` / `add_line` from any thread and never wait on the
network; `EventSender` posts them to /api/v1/leases/{id}/events in order per lease, splitting by
the contract's limits, and retries with backoff. The heartbeat loop never waits on any of this.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from spheron_sdk.fizz.client import ApiError, Backoff, FizzClient, TransientError

log = logging.getLogger("fizz.events")

MAX_EVENTS_PER_CALL = 200
MAX_LINES_PER_CALL = 1000
MAX_LINE_BYTES = 8 * 1024
# Not in the contract, but 1,000 lines of 8 KiB would be an 8 MiB body, beyond common server limits
# (Django refuses bodies over 2.5 MiB by default); a smaller call is always within the contract.
MAX_BYTES_PER_CALL = 1024 * 1024
FLUSH_LINES = 200
FLUSH_SECONDS = 1.0
# Memory bound while the server is unreachable; beyond it the oldest log lines are dropped
# (lifecycle events are always kept: they are few and the server needs them).
MAX_QUEUED_LOG_BYTES = 32 * 1024 * 1024


def utc_now() -> str:
    """ISO 8601 UTC with milliseconds and a Z, e.g. 2026-11-23T10:00:00.123Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def truncate_line(line: str, limit: int = MAX_LINE_BYTES) -> str:
    """At most `limit` UTF-8 bytes, cut on a character boundary."""
    encoded = line.encode("utf-8", errors="replace")
    if len(encoded) <= limit:
        return line
    return encoded[:limit].decode("utf-8", errors="ignore")


@dataclass
class _Item:
    lease_id: int
    event: dict[str, Any]
    size: int  # JSON bytes, for the per-call byte budget and the memory bound

    @property
    def lines(self) -> int:
        return len(self.event.get("lines", ()))


@dataclass
class _Buffer:
    lines: list[str]
    started: float
    at: str


class EventQueue:
    """Thread-safe FIFO of lease events with per-(lease, stream) log line batching."""

    def __init__(self, max_log_bytes: int = MAX_QUEUED_LOG_BYTES) -> None:
        self._cond = threading.Condition()
        self._items: deque[_Item] = deque()
        self._buffers: dict[tuple[int, str], _Buffer] = {}
        self._log_bytes = 0
        self._max_log_bytes = max_log_bytes
        self.dropped_lines = 0

    def add_event(self, lease_id: int, type_: str, **fields: Any) -> None:
        """Queue a lifecycle event, after any log lines of that lease still being batched."""
        with self._cond:
            self._flush_lease_locked(lease_id)
            self._append_locked(lease_id, {"type": type_, "at": utc_now(), **fields})
            self._cond.notify_all()

    def add_line(self, lease_id: int, stream: str, line: str) -> None:
        with self._cond:
            key = (lease_id, stream)
            buf = self._buffers.get(key)
            if buf is None:
                buf = self._buffers[key] = _Buffer(lines=[], started=time.monotonic(), at=utc_now())
            buf.lines.append(truncate_line(line))
            if len(buf.lines) >= FLUSH_LINES:
                self._flush_key_locked(key)
                self._cond.notify_all()

    def flush_due(self, now: float | None = None, force: bool = False) -> None:
        """Move log batches older than FLUSH_SECONDS (or all, with force) into the queue."""
        now = time.monotonic() if now is None else now
        with self._cond:
            for key in [k for k, b in self._buffers.items() if force or now - b.started >= FLUSH_SECONDS]:
                self._flush_key_locked(key)
            self._cond.notify_all()

    def _flush_lease_locked(self, lease_id: int) -> None:
        for key in [k for k in self._buffers if k[0] == lease_id]:
            self._flush_key_locked(key)

    def _flush_key_locked(self, key: tuple[int, str]) -> None:
        buf = self._buffers.pop(key, None)
        if buf and buf.lines:
            self._append_locked(key[0], {"type": "log", "at": buf.at, "stream": key[1], "lines": buf.lines})

    def _append_locked(self, lease_id: int, event: dict[str, Any]) -> None:
        item = _Item(lease_id, event, len(json.dumps(event)))
        self._items.append(item)
        if event["type"] == "log":
            self._log_bytes += item.size
            self._drop_old_logs_locked()

    def _drop_old_logs_locked(self) -> None:
        if self._log_bytes <= self._max_log_bytes:
            return
        kept: deque[_Item] = deque()
        dropped = 0
        newest = self._items[-1]  # just added: always kept, so the latest output survives
        for item in self._items:
            if self._log_bytes > self._max_log_bytes and item.event["type"] == "log" and item is not newest:
                self._log_bytes -= item.size
                dropped += item.lines
            else:
                kept.append(item)
        self._items = kept
        if dropped:
            self.dropped_lines += dropped
            log.warning("event queue full: dropped %d old log lines (server unreachable?)", dropped)

    def pending(self) -> int:
        with self._cond:
            return len(self._items) + sum(1 for b in self._buffers.values() if b.lines)

    def take_batch(self, timeout: float) -> tuple[int, list[_Item]] | None:
        """Remove and return the longest run of same-lease events at the front within the limits."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            lease_id = self._items[0].lease_id
            batch: list[_Item] = []
            lines = size = 0
            while self._items and self._items[0].lease_id == lease_id and len(batch) < MAX_EVENTS_PER_CALL:
                item = self._items[0]
                if batch and (lines + item.lines > MAX_LINES_PER_CALL or size + item.size > MAX_BYTES_PER_CALL):
                    break
                batch.append(self._items.popleft())
                lines += item.lines
                size += item.size
                if item.event["type"] == "log":
                    self._log_bytes -= item.size
            return lease_id, batch

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class EventSender(threading.Thread):
    """Delivers the queue's batches; holds a failed batch and retries it before anything newer."""

    def __init__(
        self,
        queue: EventQueue,
        server: str,
        secret: str,
        backoff: Backoff | None = None,
        client: FizzClient | None = None,
    ) -> None:
        super().__init__(name="fizz-events", daemon=True)
        self.queue = queue
        self.secret = secret
        # Its own client: the heartbeat loop's connection is never shared across threads.
        self.client = client or FizzClient(server, timeout=10.0)
        self.backoff = backoff or Backoff()
        self._closing = threading.Event()
        self._deadline: float | None = None
        self.delivered = 0

    def close(self, timeout: float) -> None:
        """Deliver what is queued for up to `timeout` seconds, then stop the thread."""
        self.queue.flush_due(force=True)
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self.queue.wake()
        self.join(timeout + 1)
        self.client.close()

    def _expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def run(self) -> None:
        while True:
            self.queue.flush_due(force=self._closing.is_set())
            if self._expired():
                break
            taken = self.queue.take_batch(timeout=0.2 if self._closing.is_set() else FLUSH_SECONDS / 2)
            if taken is None:
                if self._closing.is_set() and self.queue.pending() == 0:
                    break
                continue
            if not self._deliver(*taken):
                break
        left = self.queue.pending()
        if left:
            log.warning("agent stopping with %d lease events not delivered", left)

    def _deliver(self, lease_id: int, batch: list[_Item]) -> bool:
        """Post one batch until it is accepted or refused; False when out of time while closing."""
        events = [item.event for item in batch]
        attempt = 0
        while True:
            try:
                self.client.post_events(lease_id, self.secret, events)
                self.delivered += len(events)
                return True
            except ApiError as exc:
                # Refused for good (lease not ours any more, revoked secret, bad payload): retrying
                # the same batch would block every later event, so drop it and say why.
                log.error(
                    "server refused %d events for lease %d: %s %s", len(events), lease_id, exc.status, exc.message
                )
                return True
            except TransientError as exc:
                delay = self.backoff.delay(attempt)
                attempt += 1
                log.warning(
                    "sending events for lease %d failed (attempt %d): %s; retrying in %.1f s",
                    lease_id,
                    attempt,
                    exc.reason,
                    delay,
                )
                if self._deadline is None:
                    # Wakes early when the agent starts closing; the batch is then retried at once.
                    self._closing.wait(delay)
                else:
                    time.sleep(min(delay, max(0.0, self._deadline - time.monotonic())))
                if self._expired():
                    log.warning("gave up on %d events for lease %d: agent stopping", len(events), lease_id)
                    return False
