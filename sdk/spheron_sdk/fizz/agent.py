"""The agent: register once, then heartbeat forever, running what the server assigns.

Threads: the caller's (main) thread runs registration and the heartbeat loop and is the only one
that touches `self.leases`; each workload has a supervisor thread; `EventSender` delivers lease
events. Shutdown is requested with `request_stop()` (the CLI's signal handlers).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from spheron_sdk import __version__
from spheron_sdk.fizz import hardware
from spheron_sdk.fizz.client import ApiError, Backoff, FizzClient, Interrupted, TransientError, call_with_retry
from spheron_sdk.fizz.config import ConfigDir, NodeConfig
from spheron_sdk.fizz.events import EventQueue, EventSender, utc_now
from spheron_sdk.fizz.runtime import Assignment, Runtime, Workload

log = logging.getLogger("fizz.agent")

DEFAULT_INTERVAL = 15.0
# A server bug must not make the agent hammer it (0 s) or go silent for hours.
MIN_INTERVAL, MAX_INTERVAL = 1.0, 600.0
REGISTER_ATTEMPTS = 10
SHUTDOWN_EVENTS_SECONDS = 5.0
FINAL_HEARTBEAT_TIMEOUT = 3.0


class FatalError(Exception):
    """Ends the agent with exit code 1; the message is for a person."""


@dataclass
class AgentOptions:
    server: str
    config: ConfigDir
    storage_path: Path
    token: str | None = None
    region: str | None = None
    price_per_hour: str | None = None


class Agent:
    def __init__(self, options: AgentOptions, runtime: Runtime) -> None:
        self.options = options
        self.config = options.config
        self.runtime = runtime
        self.stop_event = threading.Event()
        self.backoff = Backoff()
        self.events = EventQueue()
        self.sender: EventSender | None = None
        self.node: NodeConfig | None = None
        self.leases: dict[int, Workload] = {}
        # Leases that already ran here: a repeated `start` for them must not run them twice.
        self.finished: set[int] = set()
        self.sequence = 0
        self.pending_challenges: list[dict[str, Any]] = []
        self.interval = DEFAULT_INTERVAL
        self.state: dict[str, Any] = {
            "agent_version": __version__,
            "pid": os.getpid(),
            "server": options.server,
            "runtime": runtime.name,
            "started_at": utc_now(),
            "node_id": None,
            "agent_state": "starting",  # the agent's own lifecycle; "status" is the server's word
            "status": None,
            "maintenance": False,
            "last_heartbeat_at": None,
            "last_error": None,
            "leases": [],
            "stopping": False,
        }

    def request_stop(self, reason: str = "signal") -> None:
        if not self.stop_event.is_set():
            log.info("stopping (%s)", reason)
        self.stop_event.set()

    # Entry point ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped: 0 on a clean stop, 1 on a fatal error (already logged)."""
        psutil.cpu_percent(interval=None)  # prime: the next call measures from here
        self._reap_leftovers()
        self._save_state()
        with FizzClient(self.options.server) as client:
            try:
                self.node = self.ensure_registered(client)
            except Interrupted:
                log.info("stopped before registration finished")
                self._save_state(agent_state="stopped")
                return 0
            except FatalError as exc:
                log.error("%s", exc)
                self._save_state(agent_state="error", last_error=str(exc))
                return 1
            self.sender = EventSender(self.events, self.options.server, self.node.node_secret)
            self.sender.start()
            code = 0
            try:
                self.loop(client)
            except FatalError as exc:
                log.error("%s", exc)
                self.state.update(agent_state="error", last_error=str(exc))
                code = 1
            finally:
                self.shutdown(client, final_heartbeat=code == 0)
        return code

    # Registration --------------------------------------------------------------------------

    def ensure_registered(self, client: FizzClient) -> NodeConfig:
        machine_id = hardware.machine_id(self.config.path)
        node = self.config.load_node()
        if node is not None:
            if node.machine_id and node.machine_id != machine_id:
                log.warning("node.json was made on another machine (machine id differs); using it anyway")
            log.info("using node %d on %s (from %s)", node.node_id, node.server, self.config.node_file)
            self.state["node_id"] = node.node_id
            return node
        if not self.options.token:
            raise FatalError("no node registered yet: pass --token (or set FIZZ_TOKEN) the first time")
        payload = self.registration_payload(machine_id)
        gpus = payload["hardware"]["gpus"]
        log.info(
            "registering with %s: %d CPUs, %d GiB RAM, %d GiB free disk, %d GPU(s)%s",
            self.options.server,
            payload["hardware"]["cpu_cores"],
            payload["hardware"]["memory_gb"],
            payload["hardware"]["storage_gb"],
            len(gpus),
            f" ({gpus[0]['name']})" if gpus else "",
        )
        token = self.options.token
        try:
            reply = call_with_retry(
                lambda: client.register(token, payload),
                what="registration",
                backoff=self.backoff,
                stop=self.stop_event,
                max_attempts=REGISTER_ATTEMPTS,
            )
        except TransientError as exc:
            raise FatalError(f"cannot register with {self.options.server}: {exc.reason}") from None
        except ApiError as exc:
            raise FatalError(registration_refused_message(exc)) from None
        try:
            node = NodeConfig(
                server=self.options.server,
                node_id=int(reply["node_id"]),
                node_secret=str(reply["node_secret"]),
                machine_id=machine_id,
                registered_at=utc_now(),
            )
        except (KeyError, TypeError, ValueError):
            raise FatalError(f"unexpected registration reply from {self.options.server}: {reply!r:.200}") from None
        self.config.save_node(node)
        self.interval = clamp_interval(reply.get("heartbeat_interval_seconds"))
        self.state.update(node_id=node.node_id, status=reply.get("status"))
        details = [f"status {reply.get('status')}"]
        if reply.get("gpu_model"):
            details.append(f"{reply.get('gpu_count')} x {reply['gpu_model']} (tier {reply.get('gpu_tier')})")
        if reply.get("trust_tier") is not None:
            details.append(f"trust tier {reply['trust_tier']}")
        if reply.get("price_per_hour"):
            unit = "hour" if str(reply.get("gpu_tier") or "").startswith("cpu-") else "GPU-hour"  # CPU/Apple tiers
            details.append(f"{reply['price_per_hour']} USD per {unit}")
        log.info("registered as node %d: %s", node.node_id, ", ".join(details))
        log_registration_notes(reply)
        return node

    def registration_payload(self, machine_id: str) -> dict[str, Any]:
        hw = hardware.detect(self.options.storage_path)
        return {
            "machine_id": machine_id,
            "hostname": hardware.hostname(),
            "agent_version": __version__,
            "os": hardware.os_string(),
            "arch": hardware.arch(),
            "runtime": self.runtime.name,
            "region": self.options.region,
            "price_per_hour": self.options.price_per_hour,
            "hardware": hw.to_payload(),
        }

    # Heartbeats ----------------------------------------------------------------------------

    def loop(self, client: FizzClient) -> None:
        while not self.stop_event.is_set():
            try:
                reply = self.heartbeat(client)
            except Interrupted:
                return
            self.handle_reply(reply)
            self.stop_event.wait(self.interval)

    def heartbeat(self, client: FizzClient) -> dict[str, Any]:
        """Send one heartbeat, retrying until the server takes it (raises Interrupted on stop)."""
        assert self.node is not None
        node = self.node
        refused = 0
        failures = 0

        def attempt() -> dict[str, Any]:
            nonlocal failures
            # A fresh number and fresh measurements per attempt: sequence strictly increases.
            self.sequence += 1
            payload = self.heartbeat_payload()
            try:
                return client.heartbeat(node.node_id, node.node_secret, payload)
            except TransientError as exc:
                failures += 1
                self._save_state(last_error=exc.reason)
                raise

        while True:
            try:
                reply = call_with_retry(attempt, what="heartbeat", backoff=self.backoff, stop=self.stop_event)
            except ApiError as exc:
                if exc.status == 401:
                    raise FatalError("node secret no longer accepted; the token may have been revoked") from None
                if exc.status == 404:
                    raise FatalError(
                        f"the server does not know node {node.node_id} for this secret ({exc.message}); "
                        f"delete {self.config.node_file} and start again with a token"
                    ) from None
                # 400/422: our payload was refused. Challenge answers are the likeliest culprit and
                # expire anyway; drop them and keep heartbeating.
                delay = self.backoff.delay(refused)
                refused += 1
                log.error("heartbeat refused (%d): %s; retrying in %.1f s", exc.status, exc.message, delay)
                self.pending_challenges = []
                self._save_state(last_error=f"{exc.status}: {exc.message}")
                if self.stop_event.wait(delay):
                    raise Interrupted("heartbeat") from None
                continue
            if failures or refused:
                log.info("heartbeat delivered again after %d failed attempt(s)", failures + refused)
            return reply if isinstance(reply, dict) else {}

    def heartbeat_payload(self, stopping: bool = False) -> dict[str, Any]:
        storage = self.options.storage_path
        gpus = hardware.query_nvidia_gpus()  # once: usage and challenge answers share it
        responses = []
        if self.pending_challenges:
            measured = hardware.measure(storage, gpus)
            responses = [{"id": c["id"], "nonce": c["nonce"], "measured": measured} for c in self.pending_challenges]
        return {
            "agent_version": __version__,
            "sequence": self.sequence,
            "usage": hardware.usage(storage, gpus),
            "challenge_responses": responses,
            "leases": self.lease_report(),
            "stopping": stopping,
        }

    def lease_report(self) -> list[dict[str, Any]]:
        self._sweep()
        return [{"lease_id": lid, "state": w.state} for lid, w in sorted(self.leases.items())]

    def _sweep(self) -> None:
        for lease_id in [lid for lid, w in self.leases.items() if w.done]:
            self.leases.pop(lease_id)
            self.finished.add(lease_id)

    def handle_reply(self, reply: dict[str, Any]) -> None:
        previous = self.state.get("status")
        self.interval = clamp_interval(reply.get("heartbeat_interval_seconds"))
        challenges = reply.get("challenges") or []
        self.pending_challenges = [
            {"id": c["id"], "nonce": c["nonce"]}
            for c in challenges
            if isinstance(c, dict) and "id" in c and "nonce" in c
        ]
        for assignment in reply.get("assignments") or []:
            try:
                self.apply(assignment)
            except Exception:  # one bad assignment must not stop the heartbeats
                log.exception("could not apply assignment %r", assignment)
        status = reply.get("status")
        if status != previous:
            log.info("server reports node status: %s", status)
        self._save_state(
            agent_state="running",
            status=status,
            maintenance=bool(reply.get("maintenance")),
            last_heartbeat_at=utc_now(),
            server_time=reply.get("server_time"),
            last_error=None,
        )

    def apply(self, data: dict[str, Any]) -> None:
        action = data.get("action")
        lease_id = int(data["lease_id"])
        if action == "start":
            self._sweep()
            if lease_id in self.leases or lease_id in self.finished:
                log.debug("lease %d: start ignored, already run here", lease_id)
                return
            try:
                assignment = Assignment.from_payload(data)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("lease %d: bad assignment: %s", lease_id, exc)
                self.events.add_event(lease_id, "failed", message=f"bad assignment: {exc}")
                self.finished.add(lease_id)
                return
            log.info("lease %d: starting (%s runtime)", lease_id, self.runtime.name)
            workload = self.runtime.create(assignment, self.events)
            self.leases[lease_id] = workload
            workload.start()
        elif action == "stop":
            workload = self.leases.get(lease_id)
            if workload is None or workload.done:
                log.debug("lease %d: stop ignored, not running here", lease_id)
                return
            log.info("lease %d: stopping (asked by the server)", lease_id)
            workload.stop("stopped by the server")
        else:
            log.warning("lease %d: unknown action %r ignored", lease_id, action)

    # Shutdown ------------------------------------------------------------------------------

    def shutdown(self, client: FizzClient, final_heartbeat: bool) -> None:
        message = "agent shutting down" if final_heartbeat else "node secret no longer accepted"
        running = [w for w in self.leases.values() if not w.done]
        for workload in running:
            workload.stop(message)
        for workload in running:
            if not workload.join(timeout=workload.grace + 5):
                log.warning("lease %d: did not stop in time", workload.lease_id)
        if self.sender is not None:
            self.sender.close(timeout=SHUTDOWN_EVENTS_SECONDS if final_heartbeat else 0.5)
        if final_heartbeat and self.node is not None:
            self.sequence += 1
            try:
                reply = client.heartbeat(
                    self.node.node_id,
                    self.node.node_secret,
                    self.heartbeat_payload(stopping=True),
                    timeout=FINAL_HEARTBEAT_TIMEOUT,
                )
                log.info("told the server this node is stopping")
                # `fizz status` then shows what the server now says (offline), not the last heartbeat's.
                if isinstance(reply, dict) and reply.get("status"):
                    self.state["status"] = reply["status"]
            except (ApiError, TransientError) as exc:
                log.warning("could not send the last heartbeat: %s", exc)
        self._sweep()
        if self.state.get("agent_state") != "error":
            self.state["agent_state"] = "stopped"
        self._save_state(stopping=True)

    def _reap_leftovers(self) -> None:
        """Before the first heartbeat: stop what an earlier agent process left running, so every
        workload here is one this agent reports (the server frees a node's capacity for an ended
        lease once no heartbeat lists it). Leases still active are started again by the server."""
        previous = (self.config.load_state() or {}).get("leases") or []
        try:
            reaped = self.runtime.reap([lease for lease in previous if isinstance(lease, dict)])
        except Exception as exc:  # a runtime that cannot look must not keep the agent from starting
            log.warning("could not look for workloads left by an earlier agent: %s", exc)
            return
        if reaped:
            log.info("stopped %d workload(s) left running by an earlier agent process", len(reaped))

    # State file ----------------------------------------------------------------------------

    def _save_state(self, **changes: Any) -> None:
        self.state.update(changes)
        self.state.update(
            updated_at=utc_now(),
            sequence=self.sequence,
            heartbeat_interval_seconds=self.interval,
            leases=[
                {"lease_id": lid, "state": w.state, "handle": w.handle()} for lid, w in sorted(self.leases.items())
            ],
        )
        try:
            self.config.save_state(self.state)
        except OSError as exc:  # a full disk must not stop the agent
            log.warning("cannot write %s: %s", self.config.state_file, exc)


def clamp_interval(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL
    return min(MAX_INTERVAL, max(MIN_INTERVAL, seconds))


def registration_refused_message(exc: ApiError) -> str:
    if exc.status == 401:
        return "the token was not accepted (wrong or revoked)"
    if exc.status == 409:
        node = exc.extra.get("node_id") if isinstance(exc.extra, dict) else None
        default = f"this token is already in use by another machine{f' (node {node})' if node else ''}"
        text = exc.message or default
        return f"{text} (make a new token in the dashboard for this machine)"
    detail = f" ({exc.extra})" if exc.extra else ""
    return f"the server refused the registration ({exc.status}): {exc.message}{detail}"


def log_registration_notes(reply: dict[str, Any]) -> None:
    """What the server says about the node it registered: warnings (fewer cores or less disk than a
    Fizz node should have) and what makes it rentable (the provider's stake per GPU)."""
    for warning in reply.get("warnings") or []:
        if isinstance(warning, str):
            log.warning("server: %s", warning[:500])
    rentable = reply.get("rentable")
    if isinstance(rentable, dict) and isinstance(rentable.get("message"), str):
        level = logging.INFO if rentable.get("stake_covered") else logging.WARNING
        log.log(level, "%s", rentable["message"][:500])
