"""Billing rows say what happened in the renter's words ("Held $0.01 more for Deployment #8 (job)"),
on /billing/, the transactions page, its CSV, the billing API and the statement; never the
ledger's own terms ("hold #3 swapped for hold #4", "hold 31", Stripe event ids)."""

from __future__ import annotations

import csv
import io
import re

import pytest

from billing.models import TransactionKind
from billing.services import hold_swap, topup_credit
from core import clock
from core.money import format_usd
from marketplace.deployments import services as deployments
from marketplace.models import Deployment
from tests.deployment_pages.conftest import bearer, create_and_match, spec_text

pytestmark = pytest.mark.django_db

INTERNAL = re.compile(r"(?i)hold #\d|swapped for|\bhold \d|\blease \d|evt_")


def _descriptions(html: str) -> dict[str, list[str]]:
    """{kind: [description, ...]} of the transactions table, newest first."""
    table = html.split('data-testid="transactions-table"')[1].split("</table>")[0]
    found: dict[str, list[str]] = {}
    for kind, cell in re.findall(r'data-kind="(\w+)".*?data-testid="transaction-description">(.*?)</td>', table, re.S):
        found.setdefault(kind, []).append(cell)
    return found


def test_a_deployments_rows_say_what_happened_for_which_deployment(owner_client, owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    clock.advance(600)
    deployments.deployment_close(deployment=deployment)
    lease.refresh_from_db()
    name = f"Deployment #{deployment.id} ({deployment.name})"
    lease_hold = lease.meter.hold
    charged = lease.meter.charged

    page = owner_client.get("/billing/transactions/").content.decode()
    rows = _descriptions(page)
    assert rows["hold_place"] == [f"Held $12.00 for {name} until it is used; what is not used comes back"]
    back = format_usd(12_000_000 - lease_hold.amount, places=6)
    assert rows["hold_swap"] == [
        f"{back} of what was held for {name} back in your balance: its node costs less than your maximum price"
    ]
    assert rows["hold_capture"] == [
        f"Charged {format_usd(charged, places=6)} for {name}: usage until close (closed by the renter)"
    ]
    unused = format_usd(lease_hold.amount - charged, places=6)
    assert rows["hold_release"] == [f"{unused} held for {name} and not used, back in your balance"]
    table = page.split('data-testid="transactions-table"')[1].split("</table>")[0]
    assert not INTERNAL.search(table), INTERNAL.search(table)
    assert _descriptions(owner_client.get("/billing/").content.decode()) == rows  # the overview's recent rows

    # The CSV's description column and the API's description say the same.
    export = owner_client.get("/billing/transactions/", {"format": "csv"})
    lines = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    by_kind = {line["type"]: line["description"] for line in lines}
    assert by_kind["hold_swap"] == rows["hold_swap"][0] and by_kind["hold_capture"] == rows["hold_capture"][0]
    assert not any(INTERNAL.search(line["description"]) for line in lines)

    client = owner_client.__class__(**bearer(owner))
    items = client.get("/api/v1/billing/transactions").json()["items"]
    api = {item["kind"]: item for item in items}
    assert api["hold_swap"]["description"] == rows["hold_swap"][0]
    assert api["hold_release"]["description"] == rows["hold_release"][0]
    assert not any(INTERNAL.search(item["description"]) for item in items)
    assert not any(INTERNAL.search(item["memo"]) for item in items if item["kind"] != "topup")


def test_a_hold_that_grows_says_held_more_for_the_deployment(owner_client, owner, market):
    deployment = deployments.deployment_create(user=owner, source=spec_text())
    hold = Deployment.objects.get(id=deployment.id).hold
    hold_swap(hold=hold, amount=hold.amount + 10_000, reference_type="deployment", reference_id=f"{deployment.id}:2")
    rows = _descriptions(owner_client.get("/billing/transactions/").content.decode())
    assert rows["hold_swap"] == [f"Held $0.01 more for Deployment #{deployment.id} ({deployment.name})"]


def test_an_outsider_sees_no_one_elses_deployment_in_words(outsider_client, outsider, owner, market):
    deployment, _lease = create_and_match(owner)
    page = outsider_client.get("/billing/transactions/").content.decode()
    assert f"Deployment #{deployment.id}" not in page and deployment.name not in page


def test_a_card_top_up_does_not_show_stripes_event_id(owner_client, owner):
    topup_credit(
        user=owner,
        amount=25_000_000,
        reference_type="stripe_payment_intent",
        reference_id="pi_3Nabc",
        idempotency_key="stripe:pi_3Nabc",
        memo="Card top-up #7 (evt_1NxYzAbC)",
    )
    rows = _descriptions(owner_client.get("/billing/transactions/").content.decode())
    assert "Card top-up #7" in rows[TransactionKind.TOPUP.value]
    statement = owner_client.get(f"/billing/statements/{clock.now():%Y-%m}/").content.decode()
    assert "Card top-up #7" in statement and "evt_" not in statement
