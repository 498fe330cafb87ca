"""Docker runtime: each lease is a container (the `docker` SDK, installed by `spheron-sdk[docker]`).

The SDK is imported only here and only when `--runtime docker` is chosen, so the agent works
without it on machines that use the process runtime.
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType
from typing import Any

from spheron_sdk.fizz.runtime import (
    DEFAULT_GRACE_SECONDS,
    Assignment,
    GpuAllocator,
    Reporter,
    Runtime,
    RuntimeUnavailable,
    Workload,
    WorkloadError,
)

log = logging.getLogger("fizz.docker")

LEASE_LABEL = "io.spheron.fizz.lease"


def load_docker() -> ModuleType:
    try:
        import docker  # noqa: PLC0415 - optional dependency, imported on demand
    except ImportError:
        raise RuntimeUnavailable(
            "the docker runtime needs the Docker SDK for Python: pip install 'spheron-sdk[docker]'"
        ) from None
    return docker


def container_name(lease_id: int) -> str:
    return f"fizz-lease-{lease_id}"


def run_kwargs(assignment: Assignment, gpu_ids: list[int] | None, docker: ModuleType) -> dict[str, Any]:
    """Arguments of containers.run for a lease (pure apart from building DeviceRequest).

    command/args follow the Kubernetes meaning the contract borrows: `command` replaces the image's
    ENTRYPOINT and `args` its CMD; either left empty keeps the image's own.
    """
    kwargs: dict[str, Any] = {
        "name": container_name(assignment.lease_id),
        "detach": True,
        "environment": dict(assignment.env),
        "labels": {LEASE_LABEL: str(assignment.lease_id)},
    }
    if assignment.command:
        kwargs["entrypoint"] = list(assignment.command)
    if assignment.args:
        kwargs["command"] = list(assignment.args)
    if assignment.ports:
        kwargs["ports"] = {f"{p['port']}/tcp": p["as"] for p in assignment.ports}
    gpu_units = assignment.gpu_units
    if gpu_units:
        if gpu_ids:
            request = docker.types.DeviceRequest(device_ids=[str(i) for i in gpu_ids], capabilities=[["gpu"]])
        else:
            request = docker.types.DeviceRequest(count=gpu_units, capabilities=[["gpu"]])
        kwargs["device_requests"] = [request]
    resources = assignment.resources
    try:
        if float(resources.get("cpu_units") or 0) > 0:
            kwargs["nano_cpus"] = int(float(resources["cpu_units"]) * 1e9)
        if float(resources.get("memory_gb") or 0) > 0:
            kwargs["mem_limit"] = f"{int(float(resources['memory_gb']) * 1024)}m"
    except (TypeError, ValueError):
        log.warning("lease %d: ignoring malformed resources %r", assignment.lease_id, resources)
    return kwargs


def _split_lines(chunks: Any, on_line: Any) -> None:
    """The log stream yields byte chunks, not lines: reassemble them."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            on_line(line.rstrip(b"\r").decode("utf-8", errors="replace"))
    if pending:
        on_line(pending.rstrip(b"\r").decode("utf-8", errors="replace"))


class DockerWorkload(Workload):
    def __init__(self, assignment: Assignment, reporter: Reporter, runtime: DockerRuntime) -> None:
        super().__init__(assignment, reporter, runtime.grace)
        self.runtime = runtime
        self.container: Any = None
        self.gpus: list[int] = []

    @property
    def _docker(self) -> ModuleType:
        return self.runtime.docker

    def provisioning_message(self) -> str:
        return f"pulling {self.assignment.image}"

    def provision(self) -> None:
        image = self.assignment.image
        if not image:
            raise WorkloadError("the docker runtime needs an image")
        errors = self._docker.errors
        try:
            self.runtime.client.images.get(image)
            return
        except errors.ImageNotFound:
            pass
        except errors.DockerException as exc:
            raise WorkloadError(f"docker: {exc}")
        try:
            self.runtime.client.images.pull(image)
        except (errors.ImageNotFound, errors.NotFound):
            raise WorkloadError(f"image not found: {image}")
        except errors.DockerException as exc:
            raise WorkloadError(f"cannot pull {image}: {exc}")

    def launch(self) -> None:
        errors = self._docker.errors
        if self.assignment.gpu_units and self.runtime.gpus.total:
            self.gpus = self.runtime.gpus.acquire(self.assignment.gpu_units)
        # A container of the same lease left by an agent that crashed would make the name clash.
        try:
            self.runtime.client.containers.get(container_name(self.lease_id)).remove(force=True)
        except errors.NotFound:
            pass
        except errors.DockerException as exc:
            log.warning("lease %d: could not remove an old container: %s", self.lease_id, exc)
        try:
            self.container = self.runtime.client.containers.run(
                self.assignment.image, **run_kwargs(self.assignment, self.gpus, self._docker)
            )
        except errors.DockerException as exc:
            raise WorkloadError(f"cannot start the container: {exc}")

    def wait(self) -> int:
        readers = []
        for stream in ("stdout", "stderr"):
            chunks = self.container.logs(stream=True, follow=True, stdout=stream == "stdout", stderr=stream == "stderr")
            reader = threading.Thread(
                target=_split_lines,
                args=(chunks, lambda line, s=stream: self.reporter.add_line(self.lease_id, s, line)),
                daemon=True,
            )
            reader.start()
            readers.append(reader)
        result = self.container.wait()
        for reader in readers:
            reader.join(timeout=5)
        return int(result.get("StatusCode", -1)) if isinstance(result, dict) else int(result)

    def terminate(self) -> None:
        if self.container is not None:
            # docker stop: SIGTERM, then SIGKILL after the grace period.
            self.container.stop(timeout=int(self.grace))

    def handle(self) -> dict[str, Any] | None:
        return None if self.container is None or self.done else {"container": container_name(self.lease_id)}

    def cleanup(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except self._docker.errors.DockerException as exc:
                log.warning("lease %d: could not remove its container: %s", self.lease_id, exc)
        if self.gpus:
            self.runtime.gpus.release(self.gpus)
            self.gpus = []


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(self, gpu_indices: list[int] | None = None, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        self.gpus = GpuAllocator(gpu_indices or [])
        self.grace = grace
        self.docker: Any = None
        self.client: Any = None

    def check(self) -> None:
        self.docker = load_docker()
        try:
            self.client = self.docker.from_env()
            self.client.ping()
        except Exception as exc:  # DockerException, or a requests error straight from ping()
            raise RuntimeUnavailable(
                f"cannot reach the Docker daemon ({exc}); is it running, and may this user use it?"
            ) from None

    def create(self, assignment: Assignment, reporter: Reporter) -> Workload:
        if self.client is None:
            self.check()
        return DockerWorkload(assignment, reporter, self)

    def reap(self, previous: list[dict[str, Any]]) -> list[int]:
        """Every container with the lease label: only an agent starts them, and none runs yet."""
        if self.client is None:
            self.check()
        reaped = []
        for container in self.client.containers.list(all=True, filters={"label": LEASE_LABEL}):
            try:
                container.remove(force=True)
            except self.docker.errors.DockerException as exc:
                log.warning("could not remove container %s left by an earlier agent: %s", container.name, exc)
                continue
            lease_id = str((container.labels or {}).get(LEASE_LABEL, ""))
            log.warning("lease %s: removed its container, left running by an earlier agent", lease_id or "?")
            if lease_id.isdigit():
                reaped.append(int(lease_id))
        return reaped
