"""Billing pages name what a transaction was for: the renter's deployment, the provider's node."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from billing.references import describe_references
from core import clock
from marketplace.deployments import services as deployments
from tests.deployment_pages.conftest import create_and_match

pytestmark = pytest.mark.django_db


@pytest.mark.calendar  # this month's statement: midday, so the month cannot end mid-test
def test_renter_sees_the_deployment_behind_each_hold_and_charge(midday, owner_client, owner, outsider, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    clock.advance(600)
    deployments.deployment_close(deployment=deployment)

    link = f'<a href="/deployments/{deployment.id}/">Deployment #{deployment.id} ({deployment.name})</a>'
    overview = owner_client.get("/billing/").content.decode()
    table = overview.split('data-testid="transactions-table"')[1].split("</table>")[0]
    # The first hold, the swap to the lease's hold, the charge and the release all point at it.
    assert table.count(link) == 4, table
    assert '<td class="muted">hold' not in table and '<td class="muted">lease' not in table
    assert link in owner_client.get("/billing/transactions/").content.decode()

    today = timezone.now()
    statement = owner_client.get(f"/billing/statements/{today:%Y-%m}/").content.decode()
    assert f"Usage: Deployment #{deployment.id} ({deployment.name})" in statement

    # Someone else's references are not named for them (no label, no link).
    hold_pair = ("hold", str(deployment.hold_id))
    assert describe_references([hold_pair, ("lease", str(lease.id))], user=outsider) == {}


def test_provider_sees_the_lease_and_node_behind_each_earning(owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    clock.advance(600)
    deployments.deployment_close(deployment=deployment)

    provider_user = lease.node.provider.user
    client = Client()
    client.force_login(provider_user)
    page = client.get("/billing/earnings/").content.decode()
    assert f'<a href="/provider/nodes/{lease.node_id}/">Lease #{lease.id} on {lease.node.name}</a>' in page
    assert f"/deployments/{deployment.id}/" not in page  # the renter's page is not the provider's


def test_every_transaction_of_a_deployment_says_in_words_what_it_was(owner, market):
    from billing.models import LedgerTransaction
    from core.money import format_usd

    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    clock.advance(600)
    deployments.deployment_close(deployment=deployment)

    memos = {
        txn.kind: txn.memo
        for txn in LedgerTransaction.objects.filter(entries__account__user=owner).distinct()
        if txn.kind != "topup"
    }
    assert memos["hold_place"] == "Held until it is used; what is not used comes back"
    lease.refresh_from_db()
    new_hold = lease.meter.hold
    # Not "hold #3 swapped for hold #4": what came back, in dollars to six places.
    back = format_usd(12_000_000 - new_hold.amount, places=6)
    assert memos["hold_swap"] == f"{back} of what was held back in your balance"
    assert memos["hold_capture"] == "Usage until close: closed by the renter"  # not the code "user_closed"
    assert memos["hold_release"] == "The unused part of the hold, back in your balance"
