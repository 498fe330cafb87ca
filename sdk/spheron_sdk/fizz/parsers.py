"""Pure parsers for the outputs of hardware tools.

Each function takes the text a tool printed and returns plain values, so tests feed recorded outputs
(tests/sdk/fixtures/) instead of needing the hardware. Nothing here runs a command or reads a file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# Field order of the query the agent runs (hardware.NVIDIA_QUERY); the parser depends on it.
NVIDIA_FIELDS = ("index", "name", "uuid", "memory.total", "memory.used", "utilization.gpu", "driver_version")

# nvidia-smi prints these instead of a number when a field does not apply (MIG, some boards, vGPU).
_NVIDIA_UNAVAILABLE = {"[n/a]", "n/a", "[not supported]", "[unknown error]", "[insufficient permissions]", ""}


@dataclass(frozen=True)
class NvidiaGpu:
    index: int
    name: str
    uuid: str
    memory_total_mib: int | None
    memory_used_mib: int | None
    utilization_percent: int | None
    driver_version: str | None


@dataclass(frozen=True)
class AppleHardware:
    chip: str | None
    memory_gb: int | None
    gpu_cores: int | None
    machine_model: str | None


def _nvidia_number(text: str) -> int | None:
    """Turn a csv cell into an int, or None for [N/A]-style markers.

    Some drivers print decimals ("81559.0") or units when `nounits` is ignored ("81559 MiB").
    """
    value = text.strip()
    if value.lower() in _NVIDIA_UNAVAILABLE:
        return None
    match = re.match(r"^(-?\d+(?:\.\d+)?)", value)
    if not match:
        return None
    return int(float(match.group(1)))


def _nvidia_text(text: str) -> str | None:
    value = text.strip()
    return None if value.lower() in _NVIDIA_UNAVAILABLE else value


def parse_nvidia_smi_csv(text: str) -> list[NvidiaGpu]:
    """Parse `nvidia-smi --query-gpu=<NVIDIA_FIELDS> --format=csv,noheader,nounits`.

    Lines that do not have the expected number of fields (error messages such as "No devices were
    found", a header if one slipped in) are skipped rather than guessed at.
    """
    gpus: list[NvidiaGpu] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) > len(NVIDIA_FIELDS):
            # A GPU name with a comma in it: everything between uuid's neighbours belongs to the name.
            extra = len(cells) - len(NVIDIA_FIELDS)
            cells = [cells[0], ", ".join(cells[1 : 2 + extra]), *cells[2 + extra :]]
        if len(cells) != len(NVIDIA_FIELDS):
            continue
        if not cells[0].isdigit():
            continue
        gpus.append(
            NvidiaGpu(
                index=int(cells[0]),
                name=_nvidia_text(cells[1]) or "Unknown NVIDIA GPU",
                uuid=_nvidia_text(cells[2]) or "",
                memory_total_mib=_nvidia_number(cells[3]),
                memory_used_mib=_nvidia_number(cells[4]),
                utilization_percent=_nvidia_number(cells[5]),
                driver_version=_nvidia_text(cells[6]),
            )
        )
    return sorted(gpus, key=lambda gpu: gpu.index)


def parse_nvidia_smi_cuda_version(text: str) -> str | None:
    """The CUDA version from the header of plain `nvidia-smi` ("... CUDA Version: 12.4 |")."""
    match = re.search(r"CUDA Version\s*:\s*(\d+(?:\.\d+)*)", text)
    return match.group(1) if match else None


def parse_nvidia_smi_driver_version(text: str) -> str | None:
    """The driver version from the header of plain `nvidia-smi` ("Driver Version: 550.54.15")."""
    match = re.search(r"Driver Version\s*:\s*(\d+(?:\.\d+)*)", text)
    return match.group(1) if match else None


def parse_cpuinfo_model(text: str) -> str | None:
    """The first "model name" of /proc/cpuinfo (x86); ARM kernels may have "Model" or none."""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{re.escape(key)}\s*:\s*(.+?)\s*$", text, flags=re.MULTILINE)
        if match and match.group(1):
            return " ".join(match.group(1).split())
    return None


def parse_os_release(text: str) -> dict[str, str]:
    """Parse /etc/os-release (KEY=value lines, values optionally quoted)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        values[key.strip()] = value
    return values


def parse_sysctl_brand(text: str) -> str | None:
    """`sysctl -n machdep.cpu.brand_string` prints one line, e.g. "Apple M2 Max"."""
    value = " ".join(text.split())
    return value or None


def _memory_gb(text: str | None) -> int | None:
    """ "96 GB" (system_profiler) → 96; "1 TB" → 1024; "16384 MB" → 16."""
    if not text:
        return None
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)?\s*$", text, flags=re.IGNORECASE)
    if not match:
        return None
    number = float(match.group(1))
    unit = (match.group(2) or "GB").upper().replace("I", "")
    factor = {"KB": 1 / 1024 / 1024, "MB": 1 / 1024, "GB": 1, "TB": 1024}[unit]
    return int(number * factor)


def parse_system_profiler(text: str) -> AppleHardware:
    """Parse `system_profiler SPHardwareDataType SPDisplaysDataType -json`.

    The chip comes from SPHardwareDataType.chip_type, memory from physical_memory ("96 GB"), the GPU
    core count from the built-in GPU of SPDisplaysDataType (sppci_cores, a string).
    """
    data = json.loads(text)
    hardware = (data.get("SPHardwareDataType") or [{}])[0]
    chip = hardware.get("chip_type") or None
    gpu_cores: int | None = None
    for display in data.get("SPDisplaysDataType") or []:
        cores = str(display.get("sppci_cores") or "").strip()
        if cores.isdigit():
            gpu_cores = int(cores)
            # Prefer the Apple GPU if an eGPU-era Mac lists more than one.
            if str(display.get("sppci_model", "")).startswith("Apple"):
                break
    if chip is None:
        for display in data.get("SPDisplaysDataType") or []:
            if str(display.get("sppci_model", "")).startswith("Apple"):
                chip = display["sppci_model"]
                break
    return AppleHardware(
        chip=chip,
        memory_gb=_memory_gb(hardware.get("physical_memory")),
        gpu_cores=gpu_cores,
        machine_model=hardware.get("machine_model") or None,
    )


def parse_ioreg_platform_uuid(text: str) -> str | None:
    """IOPlatformUUID from `ioreg -rd1 -c IOPlatformExpertDevice` ("IOPlatformUUID" = "…")."""
    match = re.search(r'"IOPlatformUUID"\s*=\s*"([^"]+)"', text)
    return match.group(1) if match else None
