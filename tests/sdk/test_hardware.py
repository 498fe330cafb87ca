"""Hardware detection: with a fake nvidia-smi, with faked macOS tools, and on this very machine."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from spheron_sdk.fizz import hardware

from .conftest import fixture_text


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FIZZ_NVIDIA_SMI", "FIZZ_MACHINE_ID"):
        monkeypatch.delenv(name, raising=False)


def test_detect_with_one_h100(
    fake_nvidia_smi: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FIZZ_NVIDIA_SMI", str(fake_nvidia_smi("nvidia-smi-h100-query.csv", "nvidia-smi-h100.txt")))
    hw = hardware.detect(tmp_path)
    payload = hw.to_payload()
    assert payload["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-6f7a1e5c-2b1d-4c8e-9a3f-0d5e7b9c1a24",
            "memory_total_mib": 81559,
            "memory_used_mib": 0,
            "utilization_percent": 0,
        }
    ]
    assert payload["driver_version"] == "550.54.15"
    assert payload["cuda_version"] == "12.4"
    assert payload["apple_chip"] is None
    assert payload["cpu_cores"] > 0 and payload["memory_gb"] > 0


def test_usage_and_measure_with_eight_h100(
    fake_nvidia_smi: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FIZZ_NVIDIA_SMI", str(fake_nvidia_smi("nvidia-smi-8xh100-query.csv", "nvidia-smi-8xh100.txt")))
    usage = hardware.usage(tmp_path)
    assert usage["gpu_utilization_percent"] == [100.0, 97.0, 0.0, 0.0, 35.0, 0.0, 0.0, 0.0]
    assert usage["gpu_memory_used_mib"] == [78121, 78121, 0, 0, 20471, 0, 0, 0]
    assert 0 <= usage["cpu_percent"] <= 100
    assert usage["storage_free_gb"] > 0
    measured = hardware.measure(tmp_path)
    assert len(measured["gpus"]) == 8
    assert measured["gpus"][0] == {"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559, "memory_free_mib": 3438}
    assert measured["gpus"][2]["memory_free_mib"] == 81559
    assert measured["memory_available_gb"] <= measured["memory_gb"]


def test_unavailable_fields_become_zero_in_payloads(
    fake_nvidia_smi: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FIZZ_NVIDIA_SMI", str(fake_nvidia_smi("nvidia-smi-na-query.csv", "nvidia-smi-h100.txt")))
    payload = hardware.detect(tmp_path).to_payload()
    assert [g["utilization_percent"] for g in payload["gpus"]] == [0, 0]
    assert [g["memory_used_mib"] for g in payload["gpus"]] == [37, 0]
    assert hardware.usage(tmp_path)["gpu_utilization_percent"] == [0.0, 0.0]


@pytest.mark.parametrize("output", ["nvidia-smi-no-driver.txt", "nvidia-smi-no-devices.txt"])
def test_failing_nvidia_smi_means_no_gpus(
    output: str, fake_nvidia_smi: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FIZZ_NVIDIA_SMI", str(fake_nvidia_smi(fail=output, code=9)))
    hw = hardware.detect(tmp_path)
    assert (hw.gpus, hw.driver_version, hw.cuda_version) == ([], None, None)


def test_missing_nvidia_smi_means_no_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FIZZ_NVIDIA_SMI", str(tmp_path / "does-not-exist"))
    assert hardware.detect(tmp_path).gpus == []
    assert hardware.usage(tmp_path)["gpu_memory_used_mib"] == []


def test_detection_on_this_machine(tmp_path: Path) -> None:
    """This CI machine: Linux, no GPU (and if someone runs it on a GPU box, GPUs are well-formed)."""
    hw = hardware.detect(tmp_path)
    assert hw.cpu_cores == os.cpu_count()
    assert hw.memory_gb > 0
    assert hw.storage_gb > 0
    assert hw.cpu_model and hw.cpu_model != "unknown"
    if hardware.nvidia_smi_path() is None:
        assert hw.gpus == [] and hw.driver_version is None and hw.cuda_version is None
    assert hardware.arch() in ("x86_64", "aarch64", "arm64")
    assert hardware.os_string().startswith("Linux ")
    assert hardware.hostname()


def test_storage_of_a_path_not_yet_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probed: list[str] = []

    def disk_usage(path: str) -> SimpleNamespace:
        probed.append(path)
        return SimpleNamespace(free=123)

    monkeypatch.setattr(hardware.psutil, "disk_usage", disk_usage)
    assert hardware.free_disk_bytes(tmp_path / "a" / "b") == 123
    assert probed == [str(tmp_path)]  # the nearest existing directory, on the same filesystem


def test_apple_silicon_detection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    outputs = {
        "system_profiler": fixture_text("system-profiler-m2max.json"),
        "sysctl": fixture_text("sysctl-brand-m2max.txt"),
    }
    monkeypatch.setattr(hardware, "is_apple_silicon", lambda: True)
    monkeypatch.setattr(hardware, "_run", lambda argv, timeout=0: outputs.get(argv[0]))
    monkeypatch.setenv("FIZZ_NVIDIA_SMI", str(tmp_path / "none"))
    hw = hardware.detect(tmp_path)
    assert (hw.apple_chip, hw.apple_gpu_cores, hw.gpus) == ("Apple M2 Max", 38, [])
    assert hw.to_payload()["apple_chip"] == "Apple M2 Max"


def test_apple_falls_back_to_sysctl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "is_apple_silicon", lambda: True)
    monkeypatch.setattr(hardware, "_run", lambda argv, timeout=0: "Apple M2 Max\n" if argv[0] == "sysctl" else None)
    info = hardware.detect_apple()
    assert info is not None and info.chip == "Apple M2 Max"


def test_machine_id_is_sha256_of_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FIZZ_MACHINE_ID", "box-7")
    assert hardware.machine_id(tmp_path) == hashlib.sha256(b"box-7").hexdigest()


def test_machine_id_from_etc_machine_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = tmp_path / "machine-id-source"
    source.write_text("0123456789abcdef0123456789abcdef\n")
    monkeypatch.setattr(hardware, "LINUX_MACHINE_ID_FILES", (str(source),))
    assert hardware.machine_id(tmp_path) == hashlib.sha256(b"0123456789abcdef0123456789abcdef").hexdigest()


def test_machine_id_falls_back_to_a_stored_random_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hardware, "LINUX_MACHINE_ID_FILES", (str(tmp_path / "missing"),))
    config = tmp_path / "config"
    first = hardware.machine_id(config)
    assert len(first) == 64 and int(first, 16) >= 0
    assert hardware.machine_id(config) == first  # stable: stored, not made up again
    stored = config / "machine-id"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert hardware.machine_id(tmp_path / "other-config") != first
