"""The process runtime for real, and the docker runtime against a fake `docker` module."""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import psutil
import pytest
from spheron_sdk.fizz import docker_runtime
from spheron_sdk.fizz.runtime import Assignment, GpuAllocator, ProcessRuntime, RuntimeUnavailable, WorkloadError

from .conftest import wait_for


class Recorder:
    """A Reporter that keeps everything in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, Any]] = []

    def add_event(self, lease_id: int, type_: str, **fields: Any) -> None:
        with self.lock:
            self.items.append((type_, fields))

    def add_line(self, lease_id: int, stream: str, line: str) -> None:
        with self.lock:
            self.items.append(("line", (stream, line)))

    def types(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.items if t != "line"]

    def lines(self, stream: str) -> list[str]:
        with self.lock:
            return [v[1] for t, v in self.items if t == "line" and v[0] == stream]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def run(tmp_path: Path, assignment: Assignment, gpus: list[int] | None = None, grace: float = 0.5):
    recorder = Recorder()
    runtime = ProcessRuntime(tmp_path / "work", gpus, grace=grace)
    workload = runtime.create(assignment, recorder)
    workload.start()
    return workload, recorder, runtime


def test_runs_a_process_and_reports_its_lines_and_exit_code(tmp_path: Path) -> None:
    code = "import sys; print('hello'); print('world'); print('oops', file=sys.stderr); sys.exit(3)"
    workload, recorder, _ = run(tmp_path, Assignment(lease_id=7, command=python(code)))
    assert workload.join(timeout=10)
    assert recorder.types() == ["provisioning", "running", "exited"]
    assert recorder.items[-1] == ("exited", {"exit_code": 3})
    assert recorder.lines("stdout") == ["hello", "world"]
    assert recorder.lines("stderr") == ["oops"]
    assert workload.state == "exited" and workload.done
    assert (tmp_path / "work" / "lease-7").is_dir()  # each lease runs in its own directory


def test_command_plus_args_and_env_are_merged_without_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIZZ_TOKEN", "fzt_secret")
    monkeypatch.setenv("AGENT_SIDE", "kept")
    code = (
        "import os, sys; print(sys.argv[1:], os.environ['KEY'], os.environ['AGENT_SIDE'], 'FIZZ_TOKEN' in os.environ)"
    )
    assignment = Assignment(lease_id=1, command=python(code), args=["a", "b"], env={"KEY": "value"})
    workload, recorder, _ = run(tmp_path, assignment)
    assert workload.join(timeout=10)
    assert recorder.lines("stdout") == ["['a', 'b'] value kept False"]


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    workload, recorder, _ = run(tmp_path, Assignment(lease_id=2, command=python(code)), grace=0.3)
    wait_for(lambda: recorder.lines("stdout") == ["ready"], what="the child to start")
    pid = workload.proc.pid
    started = time.monotonic()
    workload.stop("stopped by the server")
    assert workload.join(timeout=10)
    assert time.monotonic() - started < 5
    assert recorder.types() == ["provisioning", "running", "stopped"]
    assert recorder.items[-1] == ("stopped", {"message": "stopped by the server"})
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_stop_also_ends_grandchildren(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(p.pid, flush=True); time.sleep(60)"
    )
    workload, recorder, _ = run(tmp_path, Assignment(lease_id=3, command=python(code)))
    grandchild = int(wait_for(lambda: recorder.lines("stdout"), what="the grandchild pid")[0])
    workload.stop("agent shutting down")
    assert workload.join(timeout=10)
    wait_for(
        lambda: not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE,
        what="the grandchild to die",
    )


def test_a_missing_command_fails(tmp_path: Path) -> None:
    workload, recorder, _ = run(tmp_path, Assignment(lease_id=4, command=["/nonexistent/binary-xyz"]))
    assert workload.join(timeout=10)
    assert recorder.types() == ["provisioning", "failed"]
    assert "command not found" in recorder.items[-1][1]["message"]
    workload, recorder, _ = run(tmp_path, Assignment(lease_id=5))
    assert workload.join(timeout=10)
    assert recorder.items[-1] == ("failed", {"message": "the process runtime needs a command"})


def test_stop_before_launch_reports_stopped_without_running(tmp_path: Path) -> None:
    recorder = Recorder()
    workload = ProcessRuntime(tmp_path).create(Assignment(lease_id=6, command=python("print(1)")), recorder)
    workload.stop("stopped by the server")  # before start(): the supervisor must not launch it
    workload.start()
    assert workload.join(timeout=10)
    assert recorder.types() == ["provisioning", "stopped"]


def test_each_lease_gets_its_own_gpus(tmp_path: Path) -> None:
    code = "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))"
    runtime = ProcessRuntime(tmp_path, gpu_indices=[0, 1, 2])
    recorders = []
    for lease_id, units in ((1, 1), (2, 2), (3, 0)):
        recorder = Recorder()
        resources = {"gpu_units": units}
        workload = runtime.create(Assignment(lease_id=lease_id, command=python(code), resources=resources), recorder)
        workload.start()
        assert workload.join(timeout=10)
        recorders.append(recorder)
    assert recorders[0].lines("stdout") == ["0"]
    assert recorders[1].lines("stdout") == ["0,1"]  # lease 1 gave GPU 0 back when it ended
    assert recorders[2].lines("stdout") == [""]  # a CPU lease sees no GPU at all
    allocator = GpuAllocator([0, 1])
    assert allocator.acquire(2) == [0, 1]
    with pytest.raises(WorkloadError, match="not enough free GPUs"):
        allocator.acquire(1)


def test_assignment_validation() -> None:
    data = {
        "lease_id": 7,
        "action": "start",
        "image": "python:3.12-slim",
        "command": ["python", "-c", "print('hi')"],
        "args": [],
        "env": {"KEY": "value", "N": 3},
        "ports": [{"port": 8000, "as": 8001}],
        "resources": {"cpu_units": 2, "memory_gb": 4, "storage_gb": 20, "gpu_units": 1},
    }
    assignment = Assignment.from_payload(data)
    assert assignment.env == {"KEY": "value", "N": "3"}
    assert assignment.ports == [{"port": 8000, "as": 8001}]
    assert assignment.gpu_units == 1
    with pytest.raises(ValueError, match="command"):
        Assignment.from_payload({**data, "command": "python -c 1"})
    with pytest.raises(ValueError, match="env"):
        Assignment.from_payload({**data, "env": ["A=1"]})


# Docker --------------------------------------------------------------------------------------


class FakeDockerException(Exception):
    pass


class FakeNotFound(FakeDockerException):
    pass


def fake_docker_module(client: Any) -> types.ModuleType:
    module = types.ModuleType("docker")
    module.errors = types.SimpleNamespace(
        DockerException=FakeDockerException,
        NotFound=FakeNotFound,
        ImageNotFound=FakeNotFound,
        APIError=FakeDockerException,
    )

    class DeviceRequest(dict):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    module.types = types.SimpleNamespace(DeviceRequest=DeviceRequest)

    def from_env() -> Any:
        if client is None:
            raise FakeDockerException("Error while fetching server API version: Connection refused")
        return client

    module.from_env = from_env
    return module


def test_docker_sdk_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # what an uninstalled package looks like to import
    with pytest.raises(RuntimeUnavailable, match=r"pip install 'spheron-sdk\[docker\]'"):
        docker_runtime.DockerRuntime().check()


def test_docker_daemon_unreachable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", fake_docker_module(None))
    with pytest.raises(RuntimeUnavailable, match="cannot reach the Docker daemon"):
        docker_runtime.DockerRuntime().check()


def test_container_arguments() -> None:
    module = fake_docker_module(object())
    assignment = Assignment(
        lease_id=7,
        image="python:3.12-slim",
        command=["python", "-c"],
        args=["print('hi')"],
        env={"KEY": "value"},
        ports=[{"port": 8000, "as": 18000}],
        resources={"cpu_units": 2, "memory_gb": 4, "gpu_units": 2},
    )
    kwargs = docker_runtime.run_kwargs(assignment, [3, 5], module)
    assert kwargs["name"] == "fizz-lease-7" and kwargs["detach"] is True
    assert kwargs["entrypoint"] == ["python", "-c"] and kwargs["command"] == ["print('hi')"]
    assert kwargs["environment"] == {"KEY": "value"}
    assert kwargs["ports"] == {"8000/tcp": 18000}
    assert kwargs["device_requests"] == [{"device_ids": ["3", "5"], "capabilities": [["gpu"]]}]
    assert kwargs["nano_cpus"] == 2_000_000_000 and kwargs["mem_limit"] == "4096m"
    no_ids = docker_runtime.run_kwargs(assignment, [], module)
    assert no_ids["device_requests"] == [{"count": 2, "capabilities": [["gpu"]]}]
    plain = docker_runtime.run_kwargs(Assignment(lease_id=8, image="busybox"), [], module)
    assert "entrypoint" not in plain and "device_requests" not in plain and "ports" not in plain


def test_docker_workload_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class Container:
        def logs(self, stream: bool, follow: bool, stdout: bool, stderr: bool):
            return iter([b"hel", b"lo\nwor", b"ld\n"] if stdout else [b"warn\n"])

        def wait(self) -> dict:
            return {"StatusCode": 4}

        def stop(self, timeout: int) -> None:
            calls.append("stop")

        def remove(self, force: bool) -> None:
            calls.append("remove")

    class Client:
        def __init__(self) -> None:
            self.images = types.SimpleNamespace(get=self._get, pull=lambda image: calls.append(f"pull {image}"))
            self.containers = types.SimpleNamespace(get=self._get_container, run=self._run)

        def ping(self) -> bool:
            return True

        def _get(self, image: str) -> None:
            raise FakeNotFound(image)

        def _get_container(self, name: str) -> None:
            raise FakeNotFound(name)

        def _run(self, image: str, **kwargs: Any) -> Container:
            calls.append(f"run {image} {kwargs['name']}")
            return Container()

    monkeypatch.setitem(sys.modules, "docker", fake_docker_module(Client()))
    runtime = docker_runtime.DockerRuntime()
    runtime.check()
    recorder = Recorder()
    workload = runtime.create(Assignment(lease_id=9, image="busybox:1.36"), recorder)
    workload.start()
    assert workload.join(timeout=10)
    assert calls == ["pull busybox:1.36", "run busybox:1.36 fizz-lease-9", "remove"]
    assert recorder.types() == ["provisioning", "running", "exited"]
    assert recorder.items[0] == ("provisioning", {"message": "pulling busybox:1.36"})
    assert recorder.items[-1] == ("exited", {"exit_code": 4})
    assert recorder.lines("stdout") == ["hello", "world"] and recorder.lines("stderr") == ["warn"]
