from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import ApplicationError
from providers import services
from providers.hardware import apple_model_slug, cpu_model_slug, gpu_model_slug
from providers.models import NodeStatus, ProviderProfile, StakeEvent
from tests.factories import make_node, make_provider, make_user

GOOD_EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # the EIP-55 spec's own example


@pytest.mark.parametrize(
    ("name", "memory", "slug"),
    [
        ("NVIDIA H100 80GB HBM3", 81559, "h100"),
        ("NVIDIA H100 PCIe", 81559, "h100"),
        ("NVIDIA GeForce RTX 4090", 24564, "rtx4090"),
        ("NVIDIA A100-SXM4-80GB", 81920, "a100-80g"),
        ("NVIDIA A100-PCIE-40GB", 40960, "a100-40g"),
        ("NVIDIA A100 80GB PCIe", 81920, "a100-80g"),
        ("NVIDIA RTX A6000", 49140, "a6000"),
        ("NVIDIA L40S", 46068, "l40s"),
        ("NVIDIA L4", 23034, "l4"),
        ("NVIDIA A10", 23028, "a10"),
        ("NVIDIA H200", 143771, "h200"),
        ("NVIDIA GeForce GTX 1660 SUPER", 6144, "gtx1660"),
        ("Matrox G200", 16, None),
    ],
)
def test_gpu_names_map_to_market_models(name, memory, slug):
    assert gpu_model_slug(name, memory) == slug


def test_apple_and_cpu_classes():
    assert apple_model_slug("Apple M2 Max") == "apple-m2-max"
    assert apple_model_slug("Apple M3 Pro") == "apple-m3"
    assert apple_model_slug("Apple M1 Ultra") == "apple-m1-max"
    assert apple_model_slug("Intel Core i9") is None
    assert [cpu_model_slug(n) for n in (2, 48, 49, 127, 128)] == [
        "cpu-basic", "cpu-basic", "cpu-general", "cpu-general", "cpu-hpc",
    ]  # fmt: skip


@pytest.mark.django_db
class TestOnboarding:
    def test_becoming_a_provider_checksums_the_address_and_sets_the_role(self):
        user = make_user(is_developer=True)
        profile = services.provider_onboard(
            user=user, display_name="  Acme   GPUs ", payout_evm_address=GOOD_EVM.lower(), default_region="eu-west"
        )
        user.refresh_from_db()
        assert user.is_provider and profile.display_name == "Acme GPUs"
        assert profile.payout_evm_address == GOOD_EVM  # lower case is accepted and checksummed

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"payout_evm_address": GOOD_EVM.replace("aAeb", "aaeb")}, "EIP-55"),
            ({"payout_evm_address": "0x123"}, "40 hexadecimal"),
            ({"payout_solana_address": "0OIl" * 10}, "base58"),
            ({}, "payout address"),
            ({"payout_evm_address": GOOD_EVM, "default_region": "atlantis"}, "Unknown region"),
            ({"payout_evm_address": GOOD_EVM, "display_name": ""}, "display name"),
        ],
    )
    def test_bad_input_is_explained_and_nothing_is_written(self, fields, message):
        user = make_user()
        kwargs = {"display_name": "Acme", "default_region": "us-east", **fields}
        with pytest.raises(ApplicationError) as error:
            services.provider_onboard(user=user, **kwargs)
        assert message in error.value.message
        user.refresh_from_db()
        assert not user.is_provider and not ProviderProfile.objects.filter(user=user).exists()

    def test_a_solana_address_alone_is_enough(self):
        profile = services.provider_onboard(
            user=make_user(),
            display_name="Sol Co",
            payout_solana_address="9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
            default_region="us-east",
        )
        assert profile.payout_solana_address.startswith("9xQe")


@pytest.mark.django_db
class TestStake:
    def test_stake_covers_nodes_oldest_first_at_the_minimum_per_gpu(self, provider, settings):
        # The provider fixture staked 2,000 $SPON; at 200 per GPU that covers 10 GPUs.
        first = make_node(provider=provider, gpu_model="h100", gpu_count=8, mode="provider", stake_covered=False)
        second = make_node(provider=provider, gpu_model="h100", gpu_count=4, mode="provider", stake_covered=False)
        services.stake_coverage_refresh(provider=provider)
        first.refresh_from_db()
        second.refresh_from_db()
        assert first.stake_covered and not second.stake_covered
        assert not second.is_listed  # not matchable, so not in the catalog either
        services.stake_record(provider=provider, kind="stake", amount="400")
        second.refresh_from_db()
        assert second.stake_covered and second.is_listed
        provider.refresh_from_db()
        assert provider.staked_spon == Decimal(2400) * 10**18
        services.stake_record(provider=provider, kind="slash", amount="1000", reason="downtime during a lease")
        first.refresh_from_db()
        second.refresh_from_db()
        # 1,400 covers 7 GPUs: not the 8-GPU box, but the 4-GPU one still fits.
        assert not first.stake_covered and second.stake_covered
        history = list(StakeEvent.objects.filter(provider=provider).order_by("created_at", "id"))
        assert [(e.kind, e.balance_after / 10**18) for e in history] == [
            ("stake", 2000), ("stake", 2400), ("slash", 1400),
        ]  # fmt: skip
        # The slash count the matchmaker reads is kept on the profile, and only slashes count.
        assert provider.slash_count == 1
        services.stake_record(provider=provider, kind="unstake", amount="100")
        services.stake_record(provider=provider, kind="slash", amount="100", reason="missed challenges")
        provider.refresh_from_db()
        assert provider.slash_count == 2 == StakeEvent.objects.filter(provider=provider, kind="slash").count()

    @pytest.mark.parametrize(
        ("kind", "amount", "reason", "message"),
        [
            ("unstake", "5000", "", "staked"),
            ("stake", "-1", "", "above zero"),
            ("stake", "0.0000000000000000001", "", "18 decimals"),
            ("stake", "abc", "", "amount of $SPON"),
            ("slash", "1", "", "reason"),
            ("mint", "1", "", "Unknown"),
        ],
    )
    def test_bad_stake_changes_are_refused(self, provider, kind, amount, reason, message):
        before = StakeEvent.objects.count()
        with pytest.raises(ApplicationError) as error:
            services.stake_record(provider=provider, kind=kind, amount=amount, reason=reason)
        assert message in error.value.message
        assert StakeEvent.objects.count() == before

    def test_disabled_nodes_need_no_stake(self, provider):
        node = make_node(provider=provider, gpu_count=1, status=NodeStatus.DISABLED, stake_covered=True)
        services.stake_coverage_refresh(provider=provider)
        node.refresh_from_db()
        assert not node.stake_covered


@pytest.mark.django_db
def test_slash_count_migration_counts_existing_slashes():
    """providers 0007 fills slash_count from the slash StakeEvents recorded before it existed."""
    import importlib

    from django.apps import apps

    from core import clock

    migration = importlib.import_module("providers.migrations.0007_providerprofile_slash_count")
    twice, once, never = (make_provider() for _ in range(3))
    for provider, kinds in ((twice, ["slash", "stake", "slash"]), (once, ["slash", "unstake"]), (never, ["stake"])):
        for kind in kinds:
            StakeEvent.objects.create(provider=provider, kind=kind, amount=1, balance_after=0, created_at=clock.now())
    ProviderProfile.objects.update(slash_count=0)
    migration.count_slashes(apps, None)
    counts = dict(ProviderProfile.objects.filter(id__in=[twice.id, once.id, never.id]).values_list("id", "slash_count"))
    assert counts == {twice.id: 2, once.id: 1, never.id: 0}
