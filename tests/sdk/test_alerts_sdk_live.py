"""Low-balance alerts and card auto-reload from Python (spheron_sdk.client) and from `sphnctl`
(a subprocess), against the live test server: no mocked HTTP. The webhook receiver is a real local
HTTP server; the card is saved on a real localstripe through the page, as a browser would."""

from __future__ import annotations

import json

import pytest
from django.test import Client as PageClient
from spheron_sdk.client import Client
from spheron_sdk.errors import Conflict, PermissionDenied, ValidationError

from accounts.api_keys import api_key_create
from billing.alerts import alert_delivery_attempt, signature_verify
from billing.selectors import user_balances
from tests.billing_alerts.receiver import webhook_receiver
from tests.billing_alerts.test_autoreload import save_card
from tests.billing_stripe.conftest import (  # noqa: F401  (the localstripe fixtures)
    localstripe_url,
    stripe_client,
    stripe_settings,
    webhook_secret,
)
from tests.deployments.conftest import fund
from tests.factories import make_user
from tests.sdk import test_client_live as client_tests
from tests.sdk.test_cli_live import parsed, run  # noqa: F401  (run: the sphnctl fixture)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
owner = client_tests.owner  # funded with $100
api = client_tests.api
_sqlite_reads_do_not_wait = client_tests._sqlite_reads_do_not_wait
USD = 1_000_000


def key(user, *scopes: str) -> str:
    _key, raw = api_key_create(user=user, label="alerts tests", scopes=list(scopes) or ["full"])
    return raw


# --- the Python SDK --------------------------------------------------------------------------------


def test_sdk_alerts_set_fire_deliver_rotate_and_remove(api, owner, settings):
    settings.DEBUG = True  # http to a loopback receiver
    assert api.billing.alerts()["thresholds"] == []
    with webhook_receiver() as receiver:
        saved = api.billing.alerts_update(thresholds=["150", "120.50"], email_enabled=False, webhook_url=receiver.url)
        secret = saved["webhook_secret"]
        assert secret and secret.startswith("sphwhsec_")
        assert saved["thresholds"] == ["150.000000", "120.500000"] and saved["email_enabled"] is False
        (event,) = saved["events"]  # $100 is below both: one alert, for the lowest
        assert event["threshold"] == "120.500000" and event["available_micros"] == 100 * USD
        (delivery,) = event["deliveries"]
        assert delivery["status"] == "pending"
        alert_delivery_attempt(delivery_id=delivery["id"])

        shown = api.billing.alerts()
        assert shown["webhook_secret"] is None and shown["webhook_secret_set"] is True
        assert shown["events"][0]["deliveries"][0]["status"] == "sent"
        (request,) = receiver.requests
        assert signature_verify(secret, request.body, request.headers["spheron-signature"])

        rotated = api.billing.alerts_rotate_secret()["webhook_secret"]
        assert rotated and rotated != secret
        assert api.billing.alerts()["webhook_secret"] is None

    kept = api.billing.alerts_update(email_enabled=True)
    assert kept["thresholds_micros"] == [150 * USD, 120_500_000] and kept["webhook_url"] == receiver.url
    removed = api.billing.alerts_update(webhook_url="", thresholds=[])
    assert removed["webhook_url"] == "" and removed["webhook_secret_set"] is False and removed["thresholds"] == []
    with pytest.raises(Conflict, match="Set a webhook URL first"):
        api.billing.alerts_rotate_secret()


def test_sdk_alert_input_errors_carry_the_servers_message(api, settings):
    settings.DEBUG = False
    with pytest.raises(ValidationError, match="must start with https://") as refused:
        api.billing.alerts_update(webhook_url="http://example.com/hook")
    assert refused.value.status == 400
    with pytest.raises(ValidationError, match="private or reserved"):
        api.billing.alerts_update(webhook_url="https://10.1.2.3/hook")
    with pytest.raises(ValidationError, match="two decimal places") as bad:
        api.billing.alerts_update(thresholds=["1e3"])
    assert bad.value.status == 422 and bad.value.fields[0]["field"].startswith("thresholds")
    with pytest.raises(ValidationError, match="at most 5"):
        api.billing.alerts_update(thresholds=["1", "2", "3", "4", "5", "6"])
    assert api.billing.alerts()["thresholds"] == []


def test_sdk_autoreload_settings_minimum_and_card_needed(api):
    data = api.billing.autoreload()
    assert (data["enabled"], data["card_saved"], data["minimum_amount"]) == (False, False, "20.000000")
    assert data["card_setup_url"].endswith("/billing/alerts/#auto-reload")
    with pytest.raises(ValidationError, match=r"at least \$20\.00"):
        api.billing.autoreload_update(amount="19.99")
    with pytest.raises(ValidationError, match="Save a card first"):
        api.billing.autoreload_update(enabled=True)
    saved = api.billing.autoreload_update(threshold="15", amount="30")
    assert (saved["threshold"], saved["amount"], saved["enabled"]) == ("15.000000", "30.000000", False)
    assert api.billing.autoreload()["amount_micros"] == 30 * USD


def test_sdk_autoreload_charges_a_card_saved_on_the_page(live_server, stripe_client, stripe_settings):  # noqa: F811
    user = make_user(email="reload-sdk@example.test", is_developer=True)
    page = PageClient()
    page.force_login(user)
    save_card(stripe_client, page)
    fund(user, 8)
    with Client(live_server.url, key(user), timeout=30, retries=0) as sdk:
        assert sdk.billing.autoreload()["card_label"] == "visa ending 4242"
        saved = sdk.billing.autoreload_update(enabled=True, threshold="10", amount="25")
        assert saved["attempt"]["status"] == "succeeded" and saved["attempt"]["amount"] == "25.000000"
        assert user_balances(user=user).available == 33 * USD
        removed = sdk.billing.autoreload_card_remove()
        assert removed["card_saved"] is False and removed["enabled"] is False


def test_sdk_scopes_read_may_look_billing_may_change(live_server, owner):
    with Client(live_server.url, key(owner, "read"), retries=0) as reader:
        assert reader.billing.alerts()["email"] == owner.email
        assert reader.billing.autoreload()["enabled"] is False
        with pytest.raises(PermissionDenied, match="lacks the 'billing' scope"):
            reader.billing.alerts_update(thresholds=["5"])
        with pytest.raises(PermissionDenied):
            reader.billing.autoreload_card_remove()
    with Client(live_server.url, key(owner, "billing"), retries=0) as biller:
        assert biller.billing.alerts_update(thresholds=["5"])["thresholds"] == ["5.000000"]


# --- sphnctl -----------------------------------------------------------------------------------------


def test_cli_alerts_set_show_rotate_and_exit_codes(run, owner, settings):  # noqa: F811
    settings.DEBUG = True
    full = key(owner)
    with webhook_receiver() as receiver:
        done = run(
            "alerts", "set", "--threshold", "150", "--threshold", "$120.50", "--no-email", "--webhook", receiver.url,
            key=full,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        saved = parsed(done)
        assert saved["thresholds"] == ["150.000000", "120.500000"] and saved["webhook_url"] == receiver.url
        assert saved["webhook_secret"].startswith("sphwhsec_") and saved["email_enabled"] is False

    shown = run("alerts", key=full)  # the group alone shows
    assert shown.returncode == 0, shown.stderr
    assert parsed(shown)["webhook_secret"] is None and parsed(shown)["webhook_secret_set"] is True
    assert len(parsed(shown)["events"]) == 1
    assert parsed(run("alerts", "show", key=full))["thresholds_micros"] == [150 * USD, 120_500_000]

    rotated = run("alerts", "rotate-secret", key=full)
    assert rotated.returncode == 0 and parsed(rotated)["webhook_secret"] not in (None, saved["webhook_secret"])
    plain = run("alerts", "rotate-secret", key=full, plain=True)
    assert plain.returncode == 0 and "Signing secret (copy it now" in plain.stdout
    assert "sphwhsec_" in plain.stdout

    # Usage errors (exit 2): nothing to change, a bad amount, a URL the server refuses.
    assert run("alerts", "set", key=full).returncode == 2
    assert run("alerts", "set", "--threshold", "abc", key=full).returncode == 2
    refused = run("alerts", "set", "--webhook", "ftp://example.com/x", key=full)
    assert refused.returncode == 2 and "must start with https://" in parsed(refused)["error"]["message"]
    # No webhook: rotating conflicts (exit 1). A read-only key may look, not change (exit 4).
    assert run("alerts", "set", "--no-webhook", key=full).returncode == 0
    conflict = run("alerts", "rotate-secret", key=full)
    assert conflict.returncode == 1 and parsed(conflict)["error"]["status"] == 409
    reader = key(owner, "read")
    assert run("alerts", "show", key=reader).returncode == 0
    denied = run("alerts", "set", "--threshold", "5", key=reader)
    assert denied.returncode == 4 and parsed(denied)["error"]["extra"]["required_scope"] == "billing"
    assert run("alerts", "show", key=full, server="http://127.0.0.1:9").returncode == 6


def test_cli_autoreload_show_set_and_remove_card(run, owner):  # noqa: F811
    full = key(owner)
    shown = run("autoreload", key=full)
    assert shown.returncode == 0, shown.stderr
    assert parsed(shown)["card_saved"] is False
    plain = run("autoreload", "show", key=full, plain=True)
    assert (
        plain.returncode == 0 and "needs a browser" in plain.stdout and "/billing/alerts/#auto-reload" in plain.stdout
    )

    low = run("autoreload", "set", "--amount", "19.99", key=full)
    assert low.returncode == 2 and "at least $20.00" in parsed(low)["error"]["message"]
    no_card = run("autoreload", "set", "--enable", key=full)
    assert no_card.returncode == 2 and "Save a card first" in parsed(no_card)["error"]["message"]
    assert run("autoreload", "set", key=full).returncode == 2
    done = run("autoreload", "set", "--threshold", "15", "--amount", "30", key=full)
    assert done.returncode == 0, done.stderr
    assert (parsed(done)["threshold"], parsed(done)["amount"]) == ("15.000000", "30.000000")
    removed = run("autoreload", "remove-card", key=full)
    assert removed.returncode == 0 and parsed(removed)["enabled"] is False
    denied = run("autoreload", "remove-card", key=key(owner, "read"))
    assert denied.returncode == 4
    assert json.loads(run("autoreload", "show", key=full).stdout)["amount_micros"] == 30 * USD
