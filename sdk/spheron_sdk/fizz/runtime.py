"""Runtimes run a lease's workload and report its life as lease events.

One small interface: `Runtime.create(assignment, reporter)` returns a `Workload`; `start()` runs it
in a supervisor thread (so a slow image pull never blocks the heartbeat loop), `stop(message)`
asks it to end without waiting, `join()` waits. `ProcessRuntime` runs a child process; the Docker
runtime (docker_runtime.py) a container.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import psutil

log = logging.getLogger("fizz.runtime")

DEFAULT_GRACE_SECONDS = 10.0
# Variables of the agent that a workload must never see.
PRIVATE_ENV = ("FIZZ_TOKEN",)
READ_CHUNK = 64 * 1024


class Reporter(Protocol):
    """Where workloads send their events (events.EventQueue)."""

    def add_event(self, lease_id: int, type_: str, **fields: Any) -> None: ...

    def add_line(self, lease_id: int, stream: str, line: str) -> None: ...


class RuntimeUnavailable(Exception):
    """The runtime cannot work on this machine (message says what to do)."""


class WorkloadError(Exception):
    """The workload could not be started; reported as a `failed` event with this message."""


@dataclass
class Assignment:
    lease_id: int
    image: str | None = None
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: list[dict[str, int]] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Assignment:
        """Validate a `start` assignment from a heartbeat reply (ValueError names the field)."""

        def str_list(name: str) -> list[str]:
            value = data.get(name) or []
            if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
                raise ValueError(f"{name} must be a list of strings")
            return [str(v) for v in value]

        env = data.get("env") or {}
        if not isinstance(env, dict):
            raise ValueError("env must be an object")
        ports = data.get("ports") or []
        if not isinstance(ports, list) or not all(isinstance(p, dict) and "port" in p for p in ports):
            raise ValueError("ports must be a list of {port, as}")
        return cls(
            lease_id=int(data["lease_id"]),
            image=data.get("image") or None,
            command=str_list("command"),
            args=str_list("args"),
            env={str(k): "" if v is None else str(v) for k, v in env.items()},
            ports=[{"port": int(p["port"]), "as": int(p.get("as") or p["port"])} for p in ports],
            resources=dict(data.get("resources") or {}),
        )

    @property
    def gpu_units(self) -> int:
        try:
            return max(0, int(self.resources.get("gpu_units") or 0))
        except (TypeError, ValueError):
            return 0


class GpuAllocator:
    """Hands each lease distinct GPUs (by index), so two 1-GPU leases do not both get GPU 0."""

    def __init__(self, indices: list[int]) -> None:
        self._free = sorted(indices)
        self.total = len(indices)
        self._lock = threading.Lock()

    def acquire(self, count: int) -> list[int]:
        with self._lock:
            if count > len(self._free):
                raise WorkloadError(f"not enough free GPUs: {count} requested, {len(self._free)} of {self.total} free")
            taken, self._free = self._free[:count], self._free[count:]
            return taken

    def release(self, indices: list[int]) -> None:
        with self._lock:
            self._free = sorted(set(self._free) | set(indices))


class Workload(ABC):
    """One lease's workload; subclasses fill in provision/launch/wait/terminate/cleanup."""

    def __init__(self, assignment: Assignment, reporter: Reporter, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        self.assignment = assignment
        self.lease_id = assignment.lease_id
        self.reporter = reporter
        self.grace = grace
        self.state = "provisioning"
        self.exit_code: int | None = None
        self._lock = threading.Lock()
        self._launched = False
        self._stop_message: str | None = None
        self._thread = threading.Thread(target=self._supervise, name=f"fizz-lease-{self.lease_id}", daemon=True)

    # Subclass hooks ------------------------------------------------------------------------

    def provisioning_message(self) -> str:
        """The message of the `provisioning` event that opens the lease's event stream."""
        return "starting"

    def provision(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Slow preparation before launch (image pull); raise WorkloadError to fail."""

    @abstractmethod
    def launch(self) -> None: ...

    @abstractmethod
    def wait(self) -> int:
        """Stream output to the reporter until the workload ends; return its exit code."""

    @abstractmethod
    def terminate(self) -> None:
        """End the workload: polite signal, then force after `self.grace` seconds."""

    def cleanup(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release what the workload held (containers, GPUs); called once at the end."""

    def handle(self) -> dict[str, Any] | None:
        """What a later agent process needs to find this workload should this one die without
        stopping it (kept in the state file; see `Runtime.reap`); None when nothing runs yet."""
        return None

    # Public interface ----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state in ("exited", "failed", "stopped")

    def start(self) -> None:
        self._thread.start()

    def stop(self, message: str) -> None:
        """Ask the workload to stop; returns at once (the grace period runs in another thread)."""
        with self._lock:
            if self._stop_message is not None or self.done:
                return
            self._stop_message = message
            launched = self._launched
        if launched:
            threading.Thread(target=self._terminate_logged, name=f"fizz-stop-{self.lease_id}", daemon=True).start()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # Supervisor ----------------------------------------------------------------------------

    def _terminate_logged(self) -> None:
        try:
            self.terminate()
        except Exception:
            log.exception("lease %d: stopping the workload failed", self.lease_id)

    def _finish(self, type_: str, **fields: Any) -> None:
        self.state = type_
        self.reporter.add_event(self.lease_id, type_, **fields)
        log.info("lease %d: %s %s", self.lease_id, type_, " ".join(f"{k}={v}" for k, v in fields.items()))

    def _supervise(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug or an unexpected runtime error must still end the lease
            log.exception("lease %d: runtime error", self.lease_id)
            if not self.done:
                self._finish("failed", message=f"agent runtime error: {exc}")
        finally:
            try:
                self.cleanup()
            except Exception:
                log.exception("lease %d: cleanup failed", self.lease_id)

    def _run(self) -> None:
        self.reporter.add_event(self.lease_id, "provisioning", message=self.provisioning_message())
        try:
            self.provision()
            with self._lock:
                if self._stop_message is not None:
                    self._finish("stopped", message=self._stop_message)
                    return
            self.launch()
        except WorkloadError as exc:
            self._finish("failed", message=str(exc))
            return
        with self._lock:
            self._launched = True
            stop_now = self._stop_message is not None
        self.state = "running"
        self.reporter.add_event(self.lease_id, "running")
        log.info("lease %d: running", self.lease_id)
        if stop_now:  # stop() came while launching: it could not terminate what did not exist yet
            threading.Thread(target=self._terminate_logged, daemon=True).start()
        code = self.wait()
        self.exit_code = code
        if self._stop_message is not None:
            self._finish("stopped", message=self._stop_message)
        else:
            self._finish("exited", exit_code=code)


class Runtime(ABC):
    name: str

    def check(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Raise RuntimeUnavailable if this runtime cannot work here (called once at start)."""

    @abstractmethod
    def create(self, assignment: Assignment, reporter: Reporter) -> Workload: ...

    def reap(self, previous: list[dict[str, Any]]) -> list[int]:
        """At start: stop what an earlier agent process left running (it was killed, or crashed)
        and return those leases' ids. `previous`: the leases of its state file, with their
        `handle`. Afterwards no workload runs here that this agent does not report, so the server
        may give an ended lease's capacity back when a heartbeat no longer lists it."""
        return []


def read_lines(stream: IO[bytes], on_line: Any) -> None:
    """Call on_line(str) per line of a binary stream; an overlong line is cut, its rest skipped."""
    skipping = False
    for chunk in iter(lambda: stream.readline(READ_CHUNK), b""):
        complete = chunk.endswith(b"\n")
        if not skipping:
            on_line(chunk.rstrip(b"\r\n").decode("utf-8", errors="replace"))
        skipping = not complete
    stream.close()


def exit_code_of(returncode: int) -> int:
    """Shell convention for a child killed by a signal (Python gives -N): 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class ProcessWorkload(Workload):
    def __init__(self, assignment: Assignment, reporter: Reporter, runtime: ProcessRuntime) -> None:
        super().__init__(assignment, reporter, runtime.grace)
        self.runtime = runtime
        self.proc: subprocess.Popen[bytes] | None = None
        self.gpus: list[int] = []

    def _argv(self) -> list[str]:
        argv = self.assignment.command + self.assignment.args
        if not argv:
            raise WorkloadError("the process runtime needs a command")
        return argv

    def provisioning_message(self) -> str:
        argv = self.assignment.command + self.assignment.args
        return f"starting process {argv[0]}" if argv else "starting process"

    def launch(self) -> None:
        argv = self._argv()
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        env.update(self.assignment.env)
        if self.runtime.gpus.total:
            # Only the lease's own GPUs, none for a CPU lease: leases must not share a GPU by accident.
            self.gpus = self.runtime.gpus.acquire(self.assignment.gpu_units)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in self.gpus)
        workdir = self.runtime.work_dir / f"lease-{self.lease_id}"
        workdir.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            # Own session: a Ctrl-C in the agent's terminal goes to the agent only (which then
            # stops workloads cleanly), and stop can signal the whole process group.
            kwargs["start_new_session"] = True
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                **kwargs,
            )
        except FileNotFoundError:
            raise WorkloadError(f"command not found: {argv[0]}")
        except OSError as exc:
            raise WorkloadError(f"cannot start {argv[0]}: {exc.strerror or exc}")
        try:
            self._started = psutil.Process(self.proc.pid).create_time()
        except psutil.Error:
            self._started = None

    def handle(self) -> dict[str, Any] | None:
        if self.proc is None or self.done or getattr(self, "_started", None) is None:
            return None
        # Its own session: the process group has the workload's pid; the start time tells it
        # from a process that reuses the pid later.
        return {"pid": self.proc.pid, "started": self._started}

    def wait(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None and self.proc.stderr is not None
        readers = [
            threading.Thread(
                target=read_lines, args=(pipe, lambda line, s=name: self.reporter.add_line(self.lease_id, s, line))
            )
            for name, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for reader in readers:
            reader.daemon = True
            reader.start()
        code = self.proc.wait()
        # Leftovers of the lease (a backgrounded grandchild) must not outlive it or hold the pipes.
        self._signal_group(kill=True)
        for reader in readers:
            reader.join(timeout=2)
        return exit_code_of(code)

    def _signal_group(self, kill: bool) -> None:
        """SIGTERM (or SIGKILL) the workload's whole process group; on Windows the process only."""
        if self.proc is None:
            return
        try:
            if sys.platform == "win32":
                self.proc.kill()
            else:
                os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal_group(kill=False)
        try:
            self.proc.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            log.warning("lease %d: still running %.0f s after SIGTERM; killing it", self.lease_id, self.grace)
            self._signal_group(kill=True)

    def cleanup(self) -> None:
        if self.gpus:
            self.runtime.gpus.release(self.gpus)
            self.gpus = []


class ProcessRuntime(Runtime):
    """Runs `command + args` as a child process of the agent. No isolation: for trusted setups."""

    name = "process"

    def __init__(
        self, work_dir: Path, gpu_indices: list[int] | None = None, grace: float = DEFAULT_GRACE_SECONDS
    ) -> None:
        self.work_dir = Path(work_dir)
        self.gpus = GpuAllocator(gpu_indices or [])
        self.grace = grace

    def create(self, assignment: Assignment, reporter: Reporter) -> Workload:
        return ProcessWorkload(assignment, reporter, self)

    def reap(self, previous: list[dict[str, Any]]) -> list[int]:
        reaped = []
        for lease in previous:
            handle = lease.get("handle") or {}
            pid, started = handle.get("pid"), handle.get("started")
            if not isinstance(pid, int) or not isinstance(started, (int, float)) or pid <= 1:
                continue
            try:
                if abs(psutil.Process(pid).create_time() - started) > 0.01:
                    continue  # the pid now belongs to another process
                if sys.platform == "win32":
                    psutil.Process(pid).kill()
                else:
                    os.killpg(pid, signal.SIGKILL)
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
            log.warning(
                "lease %s: killed its process (pid %d), left running by an earlier agent", lease.get("lease_id"), pid
            )
            reaped.append(int(lease.get("lease_id") or 0))
        return reaped
