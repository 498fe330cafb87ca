"""Lease event batching, limits and delivery."""

from __future__ import annotations

import json
import random

import httpx
from spheron_sdk.fizz import events
from spheron_sdk.fizz.client import Backoff, FizzClient
from spheron_sdk.fizz.events import EventQueue, EventSender, truncate_line

from .conftest import wait_for


def drain(queue: EventQueue) -> list[tuple[int, list[dict]]]:
    batches = []
    while (taken := queue.take_batch(timeout=0)) is not None:
        batches.append((taken[0], [item.event for item in taken[1]]))
    return batches


def test_lines_are_batched_by_200_and_flushed_before_lifecycle_events() -> None:
    queue = EventQueue()
    queue.add_event(7, "running")
    for n in range(450):
        queue.add_line(7, "stdout", f"line {n}")
    queue.add_line(7, "stderr", "oops")
    queue.add_event(7, "exited", exit_code=0)
    ((lease, sent),) = drain(queue)
    assert lease == 7
    assert [e["type"] for e in sent] == ["running", "log", "log", "log", "log", "exited"]
    logs = [e for e in sent if e["type"] == "log"]
    assert [len(e["lines"]) for e in logs] == [200, 200, 50, 1]
    assert logs[0]["lines"][0] == "line 0" and logs[2]["lines"][-1] == "line 449"
    assert logs[3] == {"type": "log", "at": logs[3]["at"], "stream": "stderr", "lines": ["oops"]}
    assert sent[-1]["exit_code"] == 0 and sent[-1]["at"].endswith("Z")


def test_partial_batches_wait_for_the_flush_interval() -> None:
    queue = EventQueue()
    queue.add_line(3, "stdout", "hello")
    queue.flush_due()  # younger than a second: stays buffered
    assert queue.take_batch(timeout=0) is None
    queue.flush_due(now=float("inf"))
    (_, sent), *_ = drain(queue)
    assert sent[0]["lines"] == ["hello"]


def test_a_call_carries_at_most_200_events_and_1000_lines() -> None:
    queue = EventQueue()
    for n in range(450):
        queue.add_event(1, "log", stream="stdout", lines=[str(n)])
    sizes = [len(batch) for _, batch in drain(queue)]
    assert sizes == [200, 200, 50]

    for _ in range(12):  # 12 full log events of 200 lines: 5 per call (1,000 lines)
        for n in range(200):
            queue.add_line(2, "stdout", str(n))
    batches = drain(queue)
    assert [sum(len(e["lines"]) for e in batch) for _, batch in batches] == [1000, 1000, 400]


def test_leases_are_not_mixed_in_one_call() -> None:
    queue = EventQueue()
    queue.add_event(1, "running")
    queue.add_event(2, "running")
    queue.add_event(1, "exited", exit_code=0)
    assert [(lease, len(batch)) for lease, batch in drain(queue)] == [(1, 1), (2, 1), (1, 1)]


def test_lines_are_truncated_to_8_kib_on_a_character_boundary() -> None:
    assert truncate_line("a" * 9000) == "a" * 8192
    cut = truncate_line("é" * 5000)  # 2 bytes each: 4096 whole characters fit
    assert cut == "é" * 4096 and len(cut.encode()) <= 8192
    assert truncate_line("short") == "short"
    queue = EventQueue()
    queue.add_line(1, "stdout", "x" * 20000)
    queue.flush_due(force=True)
    ((_, sent),) = drain(queue)
    assert len(sent[0]["lines"][0]) == 8192


def test_byte_budget_keeps_calls_near_1_mib() -> None:
    queue = EventQueue()
    for _ in range(5):  # five log events of 200 lines x 2 KiB = 400 KiB each
        for _ in range(200):
            queue.add_line(1, "stdout", "y" * 2048)
    batches = drain(queue)
    assert [len(batch) for _, batch in batches] == [2, 2, 1]
    for _, batch in batches:
        assert len(json.dumps({"events": batch})) <= events.MAX_BYTES_PER_CALL
    for _ in range(200):  # one event bigger than the budget still goes, alone
        queue.add_line(1, "stdout", "y" * 8192)
    assert [len(batch) for _, batch in drain(queue)] == [1]


def test_old_log_lines_are_dropped_when_the_queue_is_full_but_lifecycle_events_stay() -> None:
    queue = EventQueue(max_log_bytes=20_000)
    queue.add_event(1, "running")
    for n in range(1000):
        queue.add_line(1, "stdout", f"{n:04d}" + "z" * 100)
    queue.add_event(1, "exited", exit_code=0)
    sent = [e for _, batch in drain(queue) for e in batch]
    assert sent[0]["type"] == "running" and sent[-1]["type"] == "exited"
    lines = [line for e in sent if e["type"] == "log" for line in e["lines"]]
    assert queue.dropped_lines > 0 and len(lines) == 1000 - queue.dropped_lines
    assert lines[-1].startswith("0999")  # the newest are kept


def make_sender(queue: EventQueue, handler) -> EventSender:
    client = FizzClient("http://fizz.test", transport=httpx.MockTransport(handler))
    return EventSender(queue, "http://fizz.test", "nsk_1_x", Backoff(cap=0.01, rng=random.Random(0)), client)


def test_sender_retries_transient_failures_in_order_and_drops_refused_batches() -> None:
    received: list[tuple[str, list[str]]] = []
    failures = iter([503, 503])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(failures, None)
        if status:
            return httpx.Response(status, json={"message": "restarting", "extra": {}})
        if request.url.path == "/api/v1/leases/9/events":
            return httpx.Response(404, json={"message": "lease 9 is not assigned to this node", "extra": {}})
        body = json.loads(request.read())
        received.append((request.url.path, [e["type"] for e in body["events"]]))
        return httpx.Response(202, json={"accepted": len(body["events"])})

    queue = EventQueue()
    queue.add_event(5, "provisioning", message="starting")
    queue.add_event(9, "running")
    queue.add_event(5, "running")
    queue.add_line(5, "stdout", "hi")
    queue.add_event(5, "exited", exit_code=0)
    sender = make_sender(queue, handler)
    sender.start()
    wait_for(lambda: len(received) == 2, what="delivery")
    sender.close(timeout=2)
    assert received == [
        ("/api/v1/leases/5/events", ["provisioning"]),
        ("/api/v1/leases/5/events", ["running", "log", "exited"]),
    ]
    assert not sender.is_alive()


def test_close_gives_up_at_the_deadline_when_the_server_is_down() -> None:
    queue = EventQueue()
    sender = make_sender(queue, lambda request: httpx.Response(503, json={"message": "down", "extra": {}}))
    sender.start()
    queue.add_event(1, "stopped", message="agent shutting down")
    sender.close(timeout=0.2)
    assert not sender.is_alive()
    assert sender.delivered == 0
