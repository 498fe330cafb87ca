from __future__ import annotations

import hashlib
import json

import pytest

from providers import services
from providers.models import ProviderProfile
from tests.factories import make_user


@pytest.fixture
def provider(db) -> ProviderProfile:
    user = make_user(is_provider=True)
    profile = services.provider_onboard(
        user=user,
        display_name="Acme GPUs",
        payout_evm_address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        default_region="us-east",
        default_mode="fizz",
    )
    services.stake_record(provider=profile, kind="stake", amount="2000", reason="test stake")
    profile.refresh_from_db()
    return profile


@pytest.fixture
def outsider(db) -> ProviderProfile:
    user = make_user(is_provider=True)
    return services.provider_onboard(
        user=user, display_name="Other Co", payout_solana_address="11111111111111111111111111111111",
        default_region="eu-west",
    )  # fmt: skip


@pytest.fixture
def token(provider) -> str:
    _row, raw = services.node_token_create(provider=provider, label="box 1")
    return raw


def hardware_report(*, machine: str = "machine-a", gpus: list | None = None, cores: int = 16, **extra) -> dict:
    report = {
        "machine_id": hashlib.sha256(machine.encode()).hexdigest(),
        "hostname": f"host-{machine}",
        "agent_version": "0.1.0",
        "os": "Linux 6.1 (Debian GNU/Linux 12)",
        "arch": "x86_64",
        "runtime": "process",
        "hardware": {
            "cpu_model": "AMD Ryzen 9 7950X",
            "cpu_cores": cores,
            "memory_gb": 64,
            "storage_gb": 900,
            "gpus": gpus
            if gpus is not None
            else [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "uuid": "GPU-1", "memory_total_mib": 24564}],
            "driver_version": "550.54.15",
            "cuda_version": "12.4",
        },
    }
    report.update(extra)
    return report


def post(client, path: str, body, credential: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {credential}"} if credential else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **headers)
