"""Who decides slashes: the downtime policy (marketplace.deployments.penalties, one slash per lease its
node's failure ended, worth the downtime; more in test_slashing_policy.py) and an admin (the Slash
admin's form, reached from the provider)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.utils import timezone

from chain.models import ChainTransaction, Rate
from core import clock
from marketplace.deployments import services as deployments
from marketplace.models import CloseReason, LeaseStatus
from providers import liveness
from providers.models import Node, ProviderProfile, Slash, SlashStatus, StakeEvent
from providers.services import stake_record
from tests.deployments.conftest import market, renter, spec_text  # noqa: F401 - fixtures
from tests.factories import make_provider, make_user

SPON = 10**18


# --- The downtime penalty -------------------------------------------------------------------


def _fail_lease(renter, settings, django_capture_on_commit_callbacks):  # noqa: F811
    """A running lease whose node goes silent for longer than the grace: failed over (the path of
    tests/deployments/test_failover.py)."""
    settings.FAILOVER_GRACE_SECONDS = 30
    deployment = deployments.deployment_create(user=renter, source=spec_text())
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    last_good = clock.now()
    Node.objects.filter(id=lease.node_id).update(last_seen_at=last_good)
    clock.advance(61)
    with django_capture_on_commit_callbacks(execute=True):
        assert liveness.node_mark_offline(node_id=lease.node_id, at=last_good, reason="no heartbeat")
    lease.refresh_from_db()
    assert (lease.status, lease.close_reason) == (LeaseStatus.CLOSED, CloseReason.PROVIDER_FAILED)
    return lease, last_good


def test_a_lease_ended_by_its_node_failure_slashes_the_value_of_its_downtime_once(
    renter,  # noqa: F811
    market,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal("0.05"), at=timezone.now(), source="test")
    provider = market["cheap"].provider
    stake_record(provider=provider, kind="stake", amount="1000", reason="agreement")  # no stake address: off chain
    lease, last_good = _fail_lease(renter, settings, django_capture_on_commit_callbacks)

    slash = Slash.objects.get()
    assert slash.provider_id == lease.node.provider_id == provider.id and slash.node_id == lease.node_id
    assert (slash.reference, slash.evidence_type, slash.evidence_id) == (
        f"lease-downtime:{lease.id}",
        "lease",
        str(lease.id),
    )
    usd = lease.price_per_hour_micros * 61 // 3600
    amount = usd * 10**18 // 50_000  # $0.05 a $SPON = 50,000 micro-USD
    down = f"Lease {lease.id} on node {lease.node_id}: down 61 s ({last_good:%Y-%m-%d %H:%M:%S}"
    assert slash.reason.startswith(down)
    assert (slash.status, int(slash.amount), int(slash.amount_slashed)) == (SlashStatus.OFF_CHAIN, amount, amount)
    provider.refresh_from_db()
    assert (int(provider.staked_spon), provider.slash_count) == (1000 * SPON - amount, 1)

    # The check scheduled for the node runs again (or the fold's sweep does): no second slash.
    assert deployments.node_leases_fail(node_id=lease.node_id, last_good=last_good) == 0
    from marketplace.deployments.penalties import lease_downtime_slash

    assert lease_downtime_slash(lease, last_good).pk == slash.pk
    assert Slash.objects.count() == 1 and StakeEvent.objects.filter(kind="slash").count() == 1
    assert not ChainTransaction.objects.exists()


def test_no_slash_when_the_downtime_policy_is_off(renter, market, settings, django_capture_on_commit_callbacks):  # noqa: F811
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal("0.05"), at=timezone.now(), source="test")
    settings.SLASH_LEASE_DOWNTIME = False
    _fail_lease(renter, settings, django_capture_on_commit_callbacks)
    assert not Slash.objects.exists()


def test_a_provider_with_nothing_staked_gets_a_failed_slash_and_the_failover_goes_on(
    renter,  # noqa: F811
    market,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal("0.05"), at=timezone.now(), source="test")
    lease, _last_good = _fail_lease(renter, settings, django_capture_on_commit_callbacks)
    slash = Slash.objects.get()
    assert (slash.status, slash.failure_reason) == (SlashStatus.FAILED, "The provider has no stake to slash.")
    assert lease.deployment.orders.filter(attempt=2).exists()  # re-matched all the same


# --- The admin -----------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, db):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def _form(admin_client, provider: ProviderProfile) -> dict[str, str]:
    page = admin_client.get(f"/admin/providers/slash/add/?provider={provider.id}").content.decode()
    reference = re.search(r'name="decision_reference" value="(admin:[0-9a-f-]{36})"', page).group(1)
    return {
        "provider": str(provider.id),
        "amount_spon": "25",
        "reason": "Fake GPUs reported",
        "decision_reference": reference,
    }


def test_an_admin_decides_a_slash_from_the_provider_page(admin_client):
    provider = make_provider()
    stake_record(provider=provider, kind="stake", amount="100", reason="agreement")
    change = admin_client.get(f"/admin/providers/providerprofile/{provider.id}/change/").content.decode()
    assert f"/admin/providers/slash/add/?provider={provider.id}" in change

    form = _form(admin_client, provider)
    response = admin_client.post("/admin/providers/slash/add/", form)
    assert response.status_code == 302
    slash = Slash.objects.get()
    assert slash.reference == form["decision_reference"] and slash.decided_by.is_superuser
    assert (slash.status, int(slash.amount_slashed)) == (SlashStatus.OFF_CHAIN, 25 * SPON)  # no stake address
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 75 * SPON

    # The same form posted twice decides one slash.
    assert admin_client.post("/admin/providers/slash/add/", form).status_code == 302
    assert Slash.objects.count() == 1
    listing = admin_client.get("/admin/providers/slash/").content.decode()
    assert "Fake GPUs reported" in listing and ">25</td>" in listing
    detail = admin_client.get(f"/admin/providers/slash/{slash.id}/change/")
    assert detail.status_code == 200 and "Fake GPUs reported" in detail.content.decode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount_spon": "0"}, "The amount must be above zero."),
        ({"amount_spon": "ten"}, "Enter an amount of $SPON, e.g. 200."),
        ({"amount_spon": ""}, "This field is required."),
        ({"reason": ""}, "This field is required."),
        ({"decision_reference": "admin:made-up"}, "Open the form again"),
        ({"amount_spon": "1", "provider": "nobody"}, "Select a valid choice."),
    ],
)
def test_bad_admin_input_is_a_form_error_not_a_server_error(admin_client, changes, message):
    provider = make_provider()
    stake_record(provider=provider, kind="stake", amount="100", reason="agreement")
    response = admin_client.post("/admin/providers/slash/add/", {**_form(admin_client, provider), **changes})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Slash.objects.exists()


def test_an_admin_slash_of_a_provider_with_nothing_staked_is_a_form_error(admin_client):
    provider = make_provider()
    response = admin_client.post("/admin/providers/slash/add/", _form(admin_client, provider))
    assert response.status_code == 200 and "The provider has no stake to slash." in response.content.decode()
    assert not Slash.objects.exists()


def test_the_stake_history_admin_still_records_an_off_chain_slash(admin_client):
    provider = make_provider()
    stake_record(provider=provider, kind="stake", amount="100", reason="agreement")
    response = admin_client.post(
        "/admin/providers/stakeevent/add/",
        {"provider": provider.id, "kind": "slash", "amount_spon": "5", "reason": "manual"},
    )
    assert response.status_code == 302
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 95 * SPON
