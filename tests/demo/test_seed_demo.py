from __future__ import annotations

from collections import Counter
from io import StringIO

import pytest
from allauth.account.models import EmailAddress
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import User
from billing.models import LedgerTransaction, TransactionKind
from billing.selectors import ledger_total, user_balances
from demo.services import DEMO_DOMAIN, DEMO_PASSWORD, demo_nodes_q, demo_seed
from marketplace.models import Lease
from providers.models import GpuModel, Node, NodeMode, NodeStatus, ProviderProfile, Region, StakeEvent, StakeEventKind
from providers.pricing import (
    FIZZ_CPU_PER_CORE_MONTH,
    FIZZ_MEMORY_PER_GB_MONTH,
    FIZZ_STORAGE_PER_GB_MONTH,
    whole_node_price_per_hour_micros,
)
from tests.factories import make_node

pytestmark = pytest.mark.django_db

TIER_UPTIME_FLOOR = {1: 0.99, 2: 0.98, 3: 0.97, 4: 0.95, 5: 0.90, 6: 0.85, 7: 0.75}


def market_snapshot() -> list[tuple]:
    """What a renter would see of each demo node, in a stable order."""
    return list(
        Node.objects.filter(demo_nodes_q())
        .order_by("provider__user__email", "name")
        .values_list(
            "provider__user__email", "name", "gpu_model_id", "gpu_count", "vram_gb", "mode", "region_id",
            "price_per_hour_micros", "cpu_cores", "memory_gb", "storage_gb", "status", "in_maintenance",
            "trust_tier", "uptime_30d", "available_gpus",
        )
    )  # fmt: skip


def test_seed_creates_exactly_the_requested_number_of_nodes():
    result = demo_seed(nodes=300, seed=1)

    assert result.created
    assert Node.objects.count() == 300
    assert Node.objects.filter(demo_nodes_q()).count() == 300
    assert result.community_operators > 0 and result.datacenter_providers > 0
    # Every provider profile belongs to a real user (demo providers live under the reserved domain).
    assert ProviderProfile.objects.filter(user__email__endswith=f"@{DEMO_DOMAIN}").count() == (
        result.community_operators + result.datacenter_providers
    )


def test_same_arguments_twice_change_nothing():
    demo_seed(nodes=300, seed=1)
    before = market_snapshot()
    node_ids = sorted(Node.objects.values_list("id", flat=True))
    user_ids = sorted(User.objects.values_list("id", flat=True))

    out = StringIO()
    call_command("seed_demo", nodes=300, seed=1, stdout=out)

    assert "Demo data already present: 300 nodes (seed 1)" in out.getvalue()
    assert sorted(Node.objects.values_list("id", flat=True)) == node_ids
    assert sorted(User.objects.values_list("id", flat=True)) == user_ids
    assert market_snapshot() == before


def test_same_seed_rebuilds_the_same_market_and_another_seed_a_different_one():
    demo_seed(nodes=300, seed=1)
    first = market_snapshot()

    result = demo_seed(nodes=300, seed=2)
    second = market_snapshot()
    assert result.created
    assert Node.objects.count() == 300
    assert second != first

    demo_seed(nodes=300, seed=1)
    assert market_snapshot() == first


def test_other_node_count_replaces_the_demo_market():
    demo_seed(nodes=300, seed=1)
    demo_seed(nodes=120, seed=1)

    assert Node.objects.count() == 120
    # Operators and companies of the bigger market are gone, not orphaned.
    assert not ProviderProfile.objects.filter(user__email__endswith=f"@{DEMO_DOMAIN}", nodes__isnull=True).exists()


def test_reseeding_leaves_other_data_alone():
    own_node = make_node(gpu_model="rtx4090", name="my-own-rig")
    own_provider, own_user = own_node.provider, own_node.provider.user

    demo_seed(nodes=300, seed=1)
    demo_seed(nodes=200, seed=9)
    demo_seed(nodes=0, seed=9)

    assert list(Node.objects.all()) == [own_node]
    assert ProviderProfile.objects.filter(id=own_provider.id).exists()
    assert User.objects.filter(id=own_user.id, email=own_user.email).exists()


def test_nodes_follow_the_protocol_rules():
    demo_seed(nodes=600, seed=3)
    models = {model.slug: model for model in GpuModel.objects.all()}
    nodes = list(Node.objects.all())

    for node in nodes:
        model = models[node.gpu_model_id]
        assert node.gpu_tier == model.gpu_tier
        if model.kind == GpuModel.Kind.APPLE:
            assert node.vram_gb == node.memory_gb <= model.vram_gb
        else:
            assert node.vram_gb == model.vram_gb
        assert node.price_per_hour_micros == whole_node_price_per_hour_micros(node)
        if node.mode == NodeMode.FIZZ:
            assert 4 <= node.trust_tier <= 7
            assert node.gpu_count == 1
            assert (
                node.cpu_price_per_core_month_micros,
                node.memory_price_per_gb_month_micros,
                node.storage_price_per_gb_month_micros,
            ) == (FIZZ_CPU_PER_CORE_MONTH, FIZZ_MEMORY_PER_GB_MONTH, FIZZ_STORAGE_PER_GB_MONTH)
            assert 8 <= node.cpu_cores <= 32 and 16 <= node.memory_gb <= 128
            assert 100 <= node.storage_gb <= 2000 and node.bandwidth_mbps >= 50
        else:
            assert node.mode == NodeMode.PROVIDER
            assert 1 <= node.trust_tier <= 3
            assert node.gpu_count in (1, 2, 4, 8)
        if node.status != NodeStatus.PENDING:
            assert node.uptime_30d > TIER_UPTIME_FLOOR[node.trust_tier]
            assert node.last_seen_at is not None
        assert 0 <= node.available_gpus <= node.gpu_count
        assert node.available_cpu_cores <= node.cpu_cores and node.available_memory_gb <= node.memory_gb

    # The provider-mode nodes really are priced by their owners, not at the Fizz list price.
    provider_cpu_prices = {n.cpu_price_per_core_month_micros for n in nodes if n.mode == NodeMode.PROVIDER}
    assert len(provider_cpu_prices) > 5


def test_market_mix_looks_like_a_community_market():
    demo_seed(nodes=2000, seed=42)
    nodes = list(Node.objects.select_related("gpu_model"))
    models = Counter(node.gpu_model_id for node in nodes)
    modes = Counter(node.mode for node in nodes)
    statuses = Counter(node.status for node in nodes)

    assert models["rtx3090"] + models["rtx4090"] > 5 * (models["h100"] + models["a100-80g"])
    assert 0.30 <= (models["rtx3090"] + models["rtx4090"]) / len(nodes) <= 0.45
    apple = sum(1 for node in nodes if node.gpu_model.kind == GpuModel.Kind.APPLE)
    assert 0.03 <= apple / len(nodes) <= 0.10
    assert all(node.mode == NodeMode.FIZZ for node in nodes if node.gpu_model.kind == GpuModel.Kind.APPLE)
    h100_modes = Counter(node.mode for node in nodes if node.gpu_model_id == "h100")
    assert h100_modes[NodeMode.PROVIDER] > h100_modes[NodeMode.FIZZ]
    assert modes[NodeMode.FIZZ] > modes[NodeMode.PROVIDER] > 0
    assert 0.78 <= statuses[NodeStatus.ONLINE] / len(nodes) <= 0.92
    assert 0.05 <= statuses[NodeStatus.OFFLINE] / len(nodes) <= 0.15
    assert any(node.in_maintenance for node in nodes) and statuses[NodeStatus.PENDING] > 0
    assert {node.region_id for node in nodes} == set(Region.objects.values_list("code", flat=True))
    assert any(node.available_gpus == 0 for node in nodes)
    assert any(0 < node.available_gpus < node.gpu_count for node in nodes)

    fizz_4090 = [n.gpu_price_per_hour_micros for n in nodes if n.gpu_model_id == "rtx4090" and n.mode == NodeMode.FIZZ]
    assert fizz_4090 and set(fizz_4090) == {175_000}
    h100_prices = sorted(
        n.gpu_price_per_hour_micros for n in nodes if n.gpu_model_id == "h100" and n.mode == NodeMode.PROVIDER
    )
    assert 1_490_000 <= h100_prices[len(h100_prices) // 2] <= 2_700_000


@pytest.mark.parametrize("email", ["developer@spheron.test", "provider@spheron.test", "admin@spheron.test"])
def test_demo_logins_sign_in_despite_mandatory_verification(client, email):
    demo_seed(nodes=20, seed=1)

    response = client.post(reverse("account_login"), {"login": email, "password": DEMO_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == reverse("home")  # not the "confirm your e-mail" page
    assert EmailAddress.objects.get(email=email).verified


def test_demo_roles():
    result = demo_seed(nodes=20, seed=1)

    assert {login.email for login in result.logins} == {
        "developer@spheron.test",
        "provider@spheron.test",
        "admin@spheron.test",
    }
    admin = User.objects.get(email="admin@spheron.test")
    assert admin.is_superuser and admin.is_staff
    provider = User.objects.get(email="provider@spheron.test")
    assert provider.is_provider and provider.provider_profile.display_name == "Demo Provider"
    assert {node.mode for node in provider.provider_profile.nodes.all()} == {NodeMode.FIZZ, NodeMode.PROVIDER}
    assert not User.objects.get(email="developer@spheron.test").is_staff
    # The other demo users cannot log in at all.
    assert not any(user.has_usable_password() for user in User.objects.filter(email__endswith=f"@{DEMO_DOMAIN}"))


@pytest.mark.parametrize("nodes", [-1, 1_000_001])
def test_command_rejects_out_of_range_node_counts(nodes):
    with pytest.raises(CommandError, match="between 0 and 1,000,000"):
        call_command("seed_demo", nodes=nodes, seed=1, stdout=StringIO())
    assert not Node.objects.exists()


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_command_rejects_out_of_range_seeds(seed):
    with pytest.raises(CommandError, match="--seed must be between 0 and"):
        call_command("seed_demo", nodes=10, seed=seed, stdout=StringIO())
    assert not Node.objects.exists()


def test_command_prints_the_demo_logins():
    out = StringIO()
    call_command("seed_demo", nodes=50, seed=4, stdout=out)

    printed = out.getvalue()
    assert "50 nodes (seed 4)" in printed
    for email in ("developer@spheron.test", "provider@spheron.test", "admin@spheron.test"):
        assert email in printed
    assert DEMO_PASSWORD in printed


def test_the_demo_developer_gets_demo_credits_once():
    demo_seed(nodes=20, seed=1)
    developer = User.objects.get(email="developer@spheron.test")
    assert user_balances(user=developer).available == 100_000_000
    grant = LedgerTransaction.objects.get(kind=TransactionKind.ADJUSTMENT, reference_id=str(developer.id))
    assert grant.created_by.email == "admin@spheron.test" and grant.memo == "Demo credits (seed_demo)"

    demo_seed(nodes=20, seed=1)  # the same market: nothing to do
    demo_seed(nodes=30, seed=2)  # another market: rebuilt, the logins kept
    assert user_balances(user=developer).available == 100_000_000
    assert ledger_total() == 0


def test_the_demo_provider_gets_settled_earnings_once_so_a_payout_can_be_tried():
    from billing.payouts import provider_earnings

    demo_seed(nodes=20, seed=1)
    provider = User.objects.get(email="provider@spheron.test")
    assert provider_earnings(user=provider).payable == 250_000_000
    grant = LedgerTransaction.objects.get(kind=TransactionKind.ADJUSTMENT, reference_id=str(provider.id))
    assert grant.created_by.email == "admin@spheron.test" and "payout" in grant.memo

    demo_seed(nodes=20, seed=1)
    demo_seed(nodes=30, seed=2)
    assert provider_earnings(user=provider).settled == 250_000_000
    assert ledger_total() == 0


def test_a_database_seeded_before_the_demo_credits_gets_them_on_the_next_run(monkeypatch):
    with monkeypatch.context() as before_the_credits:
        before_the_credits.setattr("demo.services._developer_credit", lambda: None)
        demo_seed(nodes=20, seed=1)
    developer = User.objects.get(email="developer@spheron.test")
    assert user_balances(user=developer).available == 0

    demo_seed(nodes=20, seed=1)  # already seeded: only the credits are added

    assert user_balances(user=developer).available == 100_000_000


def test_the_demo_providers_stake_is_recorded_once_with_its_history():
    demo_seed(nodes=20, seed=1)
    profile = ProviderProfile.objects.get(user__email="provider@spheron.test")
    (event,) = StakeEvent.objects.filter(provider=profile)
    assert event.kind == StakeEventKind.STAKE and event.amount == 10_000 * 10**18 == event.balance_after
    assert event.created_by.email == "admin@spheron.test" and event.reason == "Demo stake (seed_demo)"
    assert profile.staked_spon == 10_000 * 10**18

    demo_seed(nodes=20, seed=1)  # the same market: nothing to do
    demo_seed(nodes=30, seed=2)  # another market: rebuilt, the logins and the stake kept
    profile.refresh_from_db()
    assert StakeEvent.objects.filter(provider=profile).count() == 1 and profile.staked_spon == 10_000 * 10**18


def test_a_stake_seeded_without_history_is_recorded_again_from_zero(monkeypatch):
    with monkeypatch.context() as before_the_history:
        before_the_history.setattr("demo.services._provider_stake", lambda profile: None)
        demo_seed(nodes=20, seed=1)
    profile = ProviderProfile.objects.get(user__email="provider@spheron.test")
    ProviderProfile.objects.filter(id=profile.id).update(staked_spon=10_000 * 10**18)  # as older seeds set it
    assert not StakeEvent.objects.filter(provider=profile).exists()

    demo_seed(nodes=20, seed=1)

    profile.refresh_from_db()
    (event,) = StakeEvent.objects.filter(provider=profile)
    assert profile.staked_spon == event.balance_after == 10_000 * 10**18  # not 20,000


def test_the_demo_providers_price_list_is_how_its_provider_mode_nodes_are_priced():
    demo_seed(nodes=20, seed=1)
    profile = ProviderProfile.objects.get(user__email="provider@spheron.test")
    nodes = Node.objects.filter(provider=profile, mode=NodeMode.PROVIDER)
    assert nodes.count() >= 2
    listed = dict(profile.gpu_prices.values_list("gpu_model_id", "price_per_hour_micros"))
    assert listed == dict(nodes.values_list("gpu_model_id", "gpu_price_per_hour_micros"))
    assert profile.cpu_price_per_core_month_micros == 1_000_000  # $1.00 per core-month, its list price
    for node in nodes:  # each machine within 5% of the list
        for resource in ("cpu_price_per_core_month_micros", "memory_price_per_gb_month_micros",
                         "storage_price_per_gb_month_micros"):  # fmt: skip
            assert abs(getattr(node, resource) / getattr(profile, resource) - 1) <= 0.05


def test_every_demo_provider_has_a_recorded_stake_that_covers_its_nodes(settings):
    settings.MIN_STAKE_PER_GPU_SPON = "200"
    demo_seed(nodes=300, seed=5)
    market = ProviderProfile.objects.filter(user__email__endswith=f"@{DEMO_DOMAIN}")
    assert market.count() > 10
    stakes = set()
    for profile in market:
        units = sum(max(g, 1) for g in Node.objects.filter(provider=profile).values_list("gpu_count", flat=True))
        (event,) = StakeEvent.objects.filter(provider=profile)
        assert event.kind == StakeEventKind.STAKE and event.reason == "Demo stake (seed_demo)"
        assert profile.staked_spon == event.amount == event.balance_after
        assert profile.staked_spon >= 200 * units * 10**18  # at least what its nodes need
        stakes.add(profile.staked_spon)
    assert len(stakes) > market.count() // 2  # drawn, not one figure for everybody

    demo_seed(nodes=300, seed=5)  # the same market: no second stake
    assert StakeEvent.objects.filter(provider__in=market).count() == market.count()
    demo_seed(nodes=200, seed=6)  # another market: the old providers and their stake history go
    assert (
        not StakeEvent.objects.filter(provider__user__email__endswith=f"@{DEMO_DOMAIN}")
        .exclude(provider__in=ProviderProfile.objects.filter(user__email__endswith=f"@{DEMO_DOMAIN}"))
        .exists()
    )
    assert StakeEvent.objects.filter(provider__user__email__endswith=f"@{DEMO_DOMAIN}").count() == (
        ProviderProfile.objects.filter(user__email__endswith=f"@{DEMO_DOMAIN}").count()
    )


def test_a_demo_market_with_rental_history_is_kept_with_a_message_not_a_traceback(django_capture_on_commit_callbacks):
    from marketplace.deployments.forms import spec_for_node
    from marketplace.deployments.services import deployment_create, match_order
    from tests.deployments.conftest import fund

    demo_seed(nodes=40, seed=3)
    node_ids = set(Node.objects.filter(demo_nodes_q()).values_list("id", flat=True))
    node = (
        Node.objects.filter(demo_nodes_q(), status=NodeStatus.ONLINE, in_maintenance=False, available_gpus__gt=0)
        .exclude(gpu_model__kind=GpuModel.Kind.CPU)
        .order_by("id")
        .first()
    )
    renter = User.objects.get(email="developer@spheron.test")
    fund(renter, 500)
    with django_capture_on_commit_callbacks(execute=False):
        deployment = deployment_create(user=renter, source=spec_for_node(node))
    assert match_order(order_id=deployment.orders.get().id).status == "matched"

    out = StringIO()
    call_command("seed_demo", "--nodes", "25", "--seed", "4", stdout=out)  # another market asked for

    assert "Not replaced: the demo market in this database (40 nodes, seed 3, generator v" in out.getvalue()
    assert "rental history (1 lease on its nodes)" in out.getvalue() and "var/spheron.sqlite3" in out.getvalue()
    assert set(Node.objects.filter(demo_nodes_q()).values_list("id", flat=True)) == node_ids  # nothing deleted
    assert Lease.objects.get(deployment=deployment).node_id == node.id
    result = demo_seed(nodes=25, seed=4)
    assert result.kept_because and not result.created and (result.nodes, result.seed) == (40, 3)
