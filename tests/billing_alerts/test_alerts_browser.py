"""In Chromium: a developer sets a low-balance alert with a webhook on /billing/alerts/, copies the
signing secret shown once, and when the balance falls below the threshold a signed alert arrives
at a real local receiver; the delivery log says it was delivered."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from billing import tasks
from billing.alerts import SIGNATURE_HEADER, signature_verify
from billing.services import hold_place
from tests.billing_alerts.conftest import USD, fund
from tests.billing_alerts.receiver import webhook_receiver
from tests.e2e.login import log_in, verified_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_low_balance_alert_arrives_at_a_local_webhook(page: Page, live_server, settings):
    settings.DEBUG = True  # http://127.0.0.1 receivers are allowed in DEBUG only
    user = verified_user("ada@example.test")
    fund(user, 15 * USD)

    log_in(page, user.email, "/billing/alerts/")

    with webhook_receiver() as receiver:
        page.fill("input[name=thresholds]", "10")
        page.fill("input[name=webhook_url]", receiver.url)
        page.get_by_test_id("alerts-save").click()
        secret = page.get_by_test_id("webhook-secret").inner_text().strip()
        assert secret.startswith("sphwhsec_")
        page.goto("/billing/alerts/")
        expect(page.get_by_test_id("webhook-secret")).to_have_count(0)  # shown once
        expect(page.get_by_test_id("no-deliveries")).to_be_visible()

        hold_place(user=user, amount=7 * USD, reference_type="test", reference_id="spend")  # $8 left
        tasks.check_balances()
        tasks.deliver_balance_alerts()
        tasks.check_balances()  # still below: no second alert
        tasks.deliver_balance_alerts()

    (request,) = receiver.requests
    assert signature_verify(secret, request.body, request.headers[SIGNATURE_HEADER.lower()])
    body = json.loads(request.body)
    assert (body["type"], body["data"]["available"], body["data"]["threshold"]) == (
        "balance.low",
        "8.000000",
        "10.000000",
    )
    page.reload()
    row = page.locator('[data-testid=alert-deliveries] tr[data-channel="webhook"]')
    expect(row).to_have_attribute("data-status", "sent")
    expect(row).to_contain_text("Delivered")
    expect(page.locator('[data-testid=alert-deliveries] tr[data-channel="email"]')).to_have_attribute(
        "data-status", "sent"
    )
