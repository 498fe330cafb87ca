"""The pure parsers on every recorded tool output in fixtures/."""

from __future__ import annotations

import json

import pytest
from spheron_sdk.fizz import parsers
from spheron_sdk.fizz.parsers import NvidiaGpu

from .conftest import fixture_text


def test_h100_query() -> None:
    gpus = parsers.parse_nvidia_smi_csv(fixture_text("nvidia-smi-h100-query.csv"))
    assert gpus == [
        NvidiaGpu(
            index=0,
            name="NVIDIA H100 80GB HBM3",
            uuid="GPU-6f7a1e5c-2b1d-4c8e-9a3f-0d5e7b9c1a24",
            memory_total_mib=81559,
            memory_used_mib=0,
            utilization_percent=0,
            driver_version="550.54.15",
        )
    ]


def test_rtx4090_query() -> None:
    (gpu,) = parsers.parse_nvidia_smi_csv(fixture_text("nvidia-smi-rtx4090-query.csv"))
    assert (gpu.name, gpu.memory_total_mib, gpu.memory_used_mib, gpu.driver_version) == (
        "NVIDIA GeForce RTX 4090",
        24564,
        1,
        "550.107.02",
    )


def test_eight_h100_query() -> None:
    gpus = parsers.parse_nvidia_smi_csv(fixture_text("nvidia-smi-8xh100-query.csv"))
    assert [g.index for g in gpus] == list(range(8))
    assert {g.name for g in gpus} == {"NVIDIA H100 80GB HBM3"}
    assert len({g.uuid for g in gpus}) == 8
    assert [g.memory_used_mib for g in gpus] == [78121, 78121, 0, 0, 20471, 0, 0, 0]
    assert [g.utilization_percent for g in gpus] == [100, 97, 0, 0, 35, 0, 0, 0]


def test_unavailable_fields_spacing_and_crlf() -> None:
    gpus = parsers.parse_nvidia_smi_csv(fixture_text("nvidia-smi-na-query.csv"))
    assert len(gpus) == 2
    first, second = gpus
    assert (first.memory_used_mib, first.utilization_percent) == (37, None)
    assert second.index == 1
    assert second.name == "NVIDIA A100-SXM4-40GB"
    assert second.uuid == "GPU-1d2e3f4a-5b6c-7d8e-9fa0-b1c2d3e4f5a6"
    assert (second.memory_total_mib, second.memory_used_mib, second.utilization_percent) == (40960, None, None)
    assert second.driver_version == "535.129.03"


@pytest.mark.parametrize("name", ["nvidia-smi-no-driver.txt", "nvidia-smi-no-devices.txt"])
def test_error_output_gives_no_gpus(name: str) -> None:
    assert parsers.parse_nvidia_smi_csv(fixture_text(name)) == []


def test_garbage_and_empty_give_no_gpus() -> None:
    assert parsers.parse_nvidia_smi_csv("") == []
    assert parsers.parse_nvidia_smi_csv("index, name, uuid, memory.total [MiB], a, b, c\n") == []


def test_name_with_a_comma_is_kept_whole() -> None:
    (gpu,) = parsers.parse_nvidia_smi_csv("0, NVIDIA Foo, Bar Edition, GPU-x, 100, 5, 50, 550.1\n")
    assert (gpu.name, gpu.uuid, gpu.memory_total_mib) == ("NVIDIA Foo, Bar Edition", "GPU-x", 100)


def test_decimal_and_unit_numbers() -> None:
    (gpu,) = parsers.parse_nvidia_smi_csv("3, NVIDIA L4, GPU-y, 23034.0, 12 MiB, 7 %, 550.54.15\n")
    assert (gpu.index, gpu.memory_total_mib, gpu.memory_used_mib, gpu.utilization_percent) == (3, 23034, 12, 7)


@pytest.mark.parametrize(
    ("name", "cuda", "driver"),
    [
        ("nvidia-smi-h100.txt", "12.4", "550.54.15"),
        ("nvidia-smi-rtx4090.txt", "12.4", "550.107.02"),
        ("nvidia-smi-8xh100.txt", "12.4", "550.54.15"),
        ("nvidia-smi-no-driver.txt", None, None),
    ],
)
def test_versions_from_full_output(name: str, cuda: str | None, driver: str | None) -> None:
    text = fixture_text(name)
    assert parsers.parse_nvidia_smi_cuda_version(text) == cuda
    assert parsers.parse_nvidia_smi_driver_version(text) == driver


def test_system_profiler_m2_max() -> None:
    info = parsers.parse_system_profiler(fixture_text("system-profiler-m2max.json"))
    assert info == parsers.AppleHardware(chip="Apple M2 Max", memory_gb=96, gpu_cores=38, machine_model="Mac14,6")


def test_system_profiler_without_chip_type_uses_the_gpu_model() -> None:
    text = json.dumps(
        {
            "SPHardwareDataType": [{"physical_memory": "1 TB"}],
            "SPDisplaysDataType": [{"sppci_model": "Apple M3 Ultra", "sppci_cores": "80"}],
        }
    )
    info = parsers.parse_system_profiler(text)
    assert (info.chip, info.memory_gb, info.gpu_cores) == ("Apple M3 Ultra", 1024, 80)


def test_sysctl_and_ioreg() -> None:
    assert parsers.parse_sysctl_brand(fixture_text("sysctl-brand-m2max.txt")) == "Apple M2 Max"
    assert parsers.parse_sysctl_brand("\n") is None
    uuid = parsers.parse_ioreg_platform_uuid(fixture_text("ioreg-platform-m2max.txt"))
    assert uuid == "5E1C2A7B-93D4-5F60-8A1B-C2D3E4F5A6B7"
    assert parsers.parse_ioreg_platform_uuid("nothing here") is None


def test_cpuinfo_and_os_release() -> None:
    assert parsers.parse_cpuinfo_model(fixture_text("cpuinfo-epyc.txt")) == "AMD EPYC 7543 32-Core Processor"
    assert parsers.parse_cpuinfo_model("processor : 0\nBogoMIPS : 50.00\n") is None
    release = parsers.parse_os_release(fixture_text("os-release-debian12.txt"))
    assert release["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert release["ID"] == "debian"
