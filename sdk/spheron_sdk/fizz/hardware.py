"""Hardware detection and live usage, built on the pure parsers in `parsers`.

The payload shapes (`Hardware.to_payload`, `usage`, `measure`) are those of sdk/PROTOCOL.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from spheron_sdk import __version__
from spheron_sdk.fizz import parsers
from spheron_sdk.fizz.config import write_atomic
from spheron_sdk.fizz.parsers import NvidiaGpu

log = logging.getLogger("fizz.hardware")

NVIDIA_QUERY = [
    "--query-gpu=" + ",".join(parsers.NVIDIA_FIELDS),
    "--format=csv,noheader,nounits",
]
GIB = 1024**3
LINUX_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
# nvidia-smi can hang for many seconds on a wedged driver; a heartbeat must not wait on it forever.
TOOL_TIMEOUT_SECONDS = 15


def _run(argv: list[str], timeout: float = TOOL_TIMEOUT_SECONDS) -> str | None:
    """stdout of a command, or None if it is missing, fails or times out (logged at debug)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("%s: %s", argv[0], exc)
        return None
    if result.returncode != 0:
        log.debug("%s exited %s: %s", argv[0], result.returncode, result.stdout.strip() or result.stderr.strip())
        return None
    return result.stdout


def nvidia_smi_path() -> str | None:
    """$FIZZ_NVIDIA_SMI (tests, unusual installs) or nvidia-smi on PATH."""
    override = os.environ.get("FIZZ_NVIDIA_SMI")
    if override:
        return override
    return shutil.which("nvidia-smi")


def query_nvidia_gpus() -> list[NvidiaGpu]:
    """The NVIDIA GPUs now, with live memory use and utilization; [] without a working nvidia-smi."""
    exe = nvidia_smi_path()
    if not exe:
        return []
    out = _run([exe, *NVIDIA_QUERY])
    return parsers.parse_nvidia_smi_csv(out) if out else []


def query_cuda_version() -> str | None:
    exe = nvidia_smi_path()
    if not exe:
        return None
    out = _run([exe])
    return parsers.parse_nvidia_smi_cuda_version(out) if out else None


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def detect_apple() -> parsers.AppleHardware | None:
    """Chip, memory and GPU cores of an Apple silicon Mac (system_profiler, sysctl as a fallback)."""
    if not is_apple_silicon():
        return None
    out = _run(["system_profiler", "SPHardwareDataType", "SPDisplaysDataType", "-json"], timeout=30)
    info = None
    if out:
        try:
            info = parsers.parse_system_profiler(out)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            log.debug("system_profiler: %s", exc)
    if info is None or info.chip is None:
        brand = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        chip = parsers.parse_sysctl_brand(brand or "")
        info = parsers.AppleHardware(
            chip=chip,
            memory_gb=info.memory_gb if info else None,
            gpu_cores=info.gpu_cores if info else None,
            machine_model=info.machine_model if info else None,
        )
    return info


def cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            model = parsers.parse_cpuinfo_model(Path("/proc/cpuinfo").read_text(errors="replace"))
        except OSError:
            model = None
        if model:
            return model
    elif sys.platform == "darwin":
        model = parsers.parse_sysctl_brand(_run(["sysctl", "-n", "machdep.cpu.brand_string"]) or "")
        if model:
            return model
    return platform.processor() or platform.machine() or "unknown"


def os_string() -> str:
    """E.g. "Linux 6.1.0-18-amd64 (Debian GNU/Linux 12 (bookworm))" or "Darwin 23.4.0 (macOS 14.4.1)"."""
    base = f"{platform.system()} {platform.release()}".strip()
    pretty = None
    if sys.platform.startswith("linux"):
        for candidate in ("/etc/os-release", "/usr/lib/os-release"):
            try:
                pretty = parsers.parse_os_release(Path(candidate).read_text()).get("PRETTY_NAME")
            except OSError:
                continue
            break
    elif sys.platform == "darwin":
        version = platform.mac_ver()[0]
        pretty = f"macOS {version}" if version else None
    elif sys.platform == "win32":
        pretty = platform.version() or None
    return f"{base} ({pretty})" if pretty else base


def arch() -> str:
    machine = platform.machine()
    # Windows says AMD64 where Linux says x86_64; one name per architecture keeps the server simple.
    return "x86_64" if machine.lower() == "amd64" else machine


def free_disk_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding `path` (its nearest existing ancestor)."""
    probe = Path(path).expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return psutil.disk_usage(str(probe)).free


def _raw_machine_id(config_dir: Path) -> str:
    env = os.environ.get("FIZZ_MACHINE_ID")
    if env:
        return env
    if sys.platform.startswith("linux"):
        for candidate in LINUX_MACHINE_ID_FILES:
            try:
                value = Path(candidate).read_text().strip()
            except OSError:
                continue
            if value:
                return value
    elif sys.platform == "darwin":
        value = parsers.parse_ioreg_platform_uuid(_run(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"]) or "")
        if value:
            return value
    # No stable id from the OS: make one up once and keep it with the node's config.
    stored = config_dir / "machine-id"
    try:
        value = stored.read_text().strip()
        if value:
            return value
    except OSError:
        pass
    value = str(uuid.uuid4())
    write_atomic(stored, (value + "\n").encode(), mode=0o600)
    return value


def machine_id(config_dir: Path) -> str:
    """sha256 hex of the machine's id: stable per machine, without sending the raw id anywhere."""
    return hashlib.sha256(_raw_machine_id(config_dir).encode()).hexdigest()


@dataclass
class Hardware:
    cpu_model: str
    cpu_cores: int
    memory_gb: int
    storage_gb: int
    gpus: list[NvidiaGpu] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    apple_chip: str | None = None
    apple_gpu_cores: int | None = None
    bandwidth_mbps: int | None = None

    def to_payload(self) -> dict[str, Any]:
        """The `hardware` object of the register call."""
        return {
            "cpu_model": self.cpu_model,
            "cpu_cores": self.cpu_cores,
            "memory_gb": self.memory_gb,
            "storage_gb": self.storage_gb,
            "bandwidth_mbps": self.bandwidth_mbps,
            "gpus": [
                {
                    "index": gpu.index,
                    "name": gpu.name,
                    "uuid": gpu.uuid,
                    # The contract has integers here; unknown ([N/A]) is sent as 0, not null.
                    "memory_total_mib": gpu.memory_total_mib or 0,
                    "memory_used_mib": gpu.memory_used_mib or 0,
                    "utilization_percent": gpu.utilization_percent or 0,
                }
                for gpu in self.gpus
            ],
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "apple_chip": self.apple_chip,
        }


def detect(storage_path: Path) -> Hardware:
    """Everything the register call needs to know about this machine."""
    gpus = query_nvidia_gpus()
    driver = next((gpu.driver_version for gpu in gpus if gpu.driver_version), None)
    cuda = query_cuda_version() if gpus else None
    apple = detect_apple()
    memory_gb = psutil.virtual_memory().total // GIB
    return Hardware(
        cpu_model=cpu_model(),
        cpu_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        memory_gb=int(memory_gb),
        storage_gb=int(free_disk_bytes(storage_path) // GIB),
        gpus=gpus,
        driver_version=driver,
        cuda_version=cuda,
        apple_chip=apple.chip if apple else None,
        apple_gpu_cores=apple.gpu_cores if apple else None,
    )


def usage(storage_path: Path, gpus: list[NvidiaGpu] | None = None) -> dict[str, Any]:
    """The `usage` object of a heartbeat: what the machine is doing now."""
    if gpus is None:
        gpus = query_nvidia_gpus()
    memory = psutil.virtual_memory()
    return {
        # Since the previous call (the agent primes it at start), i.e. over one heartbeat interval.
        "cpu_percent": round(psutil.cpu_percent(interval=None), 1),
        "memory_used_gb": round((memory.total - memory.available) / GIB, 1),
        "storage_free_gb": round(free_disk_bytes(storage_path) / GIB, 1),
        "gpu_utilization_percent": [float(gpu.utilization_percent or 0) for gpu in gpus],
        "gpu_memory_used_mib": [gpu.memory_used_mib or 0 for gpu in gpus],
    }


def measure(storage_path: Path, gpus: list[NvidiaGpu] | None = None) -> dict[str, Any]:
    """The `measured` object of a challenge response: the hardware and what is free right now."""
    if gpus is None:
        gpus = query_nvidia_gpus()
    memory = psutil.virtual_memory()
    return {
        "agent_version": __version__,
        "cpu_cores": psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        "memory_gb": int(memory.total // GIB),
        "memory_available_gb": int(memory.available // GIB),
        "storage_free_gb": int(free_disk_bytes(storage_path) // GIB),
        "gpus": [
            {
                "name": gpu.name,
                "memory_total_mib": gpu.memory_total_mib or 0,
                "memory_free_mib": max(0, (gpu.memory_total_mib or 0) - (gpu.memory_used_mib or 0)),
            }
            for gpu in gpus
        ],
    }


def hostname() -> str:
    return socket.gethostname() or platform.node() or "unknown"
