"""/api/v1/billing/alerts and /api/v1/billing/autoreload: what the page /billing/alerts/ does, from
a terminal. Settings read and changed, the webhook secret shown once, bad input refused with a 4xx
and a message, each user sees only their own log, and the API key scopes each route needs."""

from __future__ import annotations

import json
import socket

import pytest
from django.test import Client

from accounts.api_keys import api_key_create
from billing.alerts import alert_delivery_attempt, signature_verify
from billing.models import AutoReload, BalanceAlert, BalanceAlertDelivery
from billing.selectors import user_balances
from billing.services import hold_place
from tests.billing_alerts.conftest import USD, fund
from tests.billing_alerts.receiver import webhook_receiver
from tests.billing_alerts.test_autoreload import save_card

ALERTS = "/api/v1/billing/alerts"
ROTATE = "/api/v1/billing/alerts/webhook-secret"
RELOAD = "/api/v1/billing/autoreload"
CARD = "/api/v1/billing/autoreload/card"


def put(client: Client, path: str, body: object, **extra):
    return client.put(path, data=json.dumps(body), content_type="application/json", **extra)


def test_alerts_start_empty_and_never_show_a_secret(renter, renter_client):
    answer = renter_client.get(ALERTS)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["thresholds"] == [] and body["email_enabled"] is True and body["email"] == renter.email
    assert body["webhook_url"] == "" and body["webhook_secret_set"] is False and body["webhook_secret"] is None
    assert body["events"] == [] and body["signature_header"] == "Spheron-Signature"
    assert body["page_url"] == "http://testserver/billing/alerts/"


def test_saving_alerts_returns_the_new_secret_once_and_checks_the_balance_at_once(renter, renter_client, settings):
    settings.DEBUG = True
    fund(renter, 12 * USD)
    hold_place(user=renter, amount=4 * USD, reference_type="test", reference_id="a")  # 8 available
    with webhook_receiver() as receiver:
        answer = put(
            renter_client, ALERTS, {"thresholds": ["10", "25.50"], "email_enabled": False, "webhook_url": receiver.url}
        )
        assert answer.status_code == 200, answer.content
        assert answer["Cache-Control"] == "no-store"
        saved = answer.json()
        secret = saved["webhook_secret"]
        assert secret.startswith("sphwhsec_") and saved["webhook_secret_set"] is True
        assert saved["thresholds"] == ["25.500000", "10.000000"]
        assert saved["thresholds_micros"] == [25_500_000, 10 * USD]
        # Already below both: one event, for the lowest, both thresholds quiet now.
        (event,) = saved["events"]
        assert (event["threshold_micros"], event["available"]) == (10 * USD, "8.000000")
        assert saved["fired_micros"] == [25_500_000, 10 * USD]
        ((delivery),) = event["deliveries"]
        assert (delivery["channel"], delivery["status"], delivery["target"]) == ("webhook", "pending", receiver.url)
        assert delivery["next_attempt_at"] is not None

        alert_delivery_attempt(delivery_id=delivery["id"])
        (request,) = receiver.requests
        assert signature_verify(secret, request.body, request.headers["spheron-signature"])
        assert json.loads(request.body)["id"] == event["id"]

    shown = renter_client.get(ALERTS)
    assert "no-store" not in shown.get("Cache-Control", "")
    body = shown.json()
    assert (
        body["webhook_secret"] is None and body["webhook_secret_set"] is True and secret not in shown.content.decode()
    )
    (logged,) = body["events"][0]["deliveries"]
    assert (logged["status"], logged["attempts"], logged["response_status"]) == ("sent", 1, 200)
    assert logged["next_attempt_at"] is None and logged["delivered_at"] is not None

    # Omitted fields keep their value; saving again does not make a new secret.
    again = put(renter_client, ALERTS, {"email_enabled": True}).json()
    assert again["webhook_secret"] is None and again["webhook_url"] == receiver.url
    assert again["thresholds_micros"] == [25_500_000, 10 * USD] and again["email_enabled"] is True
    assert BalanceAlert.objects.get(user=renter).webhook_secret == secret

    # "" removes the webhook and its secret.
    removed = put(renter_client, ALERTS, {"webhook_url": ""}).json()
    assert removed["webhook_url"] == "" and removed["webhook_secret_set"] is False


def test_rotating_the_secret_returns_it_once_and_the_old_one_stops_signing(renter, renter_client, settings):
    settings.DEBUG = True
    refused = renter_client.post(ROTATE)
    assert refused.status_code == 409 and "Set a webhook URL first" in refused.json()["message"]
    with webhook_receiver() as receiver:
        first = put(renter_client, ALERTS, {"thresholds": ["10"], "webhook_url": receiver.url}).json()["webhook_secret"]
        rotated = renter_client.post(ROTATE)
        assert rotated.status_code == 200 and rotated["Cache-Control"] == "no-store"
        second = rotated.json()["webhook_secret"]
        assert second.startswith("sphwhsec_") and second != first
        fund(renter, 12 * USD)
        hold_place(user=renter, amount=4 * USD, reference_type="test", reference_id="a")
        put(renter_client, ALERTS, {})  # saving checks the balance: the alert fires
        alert_delivery_attempt(delivery_id=BalanceAlertDelivery.objects.get(channel="webhook").id)
    (request,) = receiver.requests
    header = request.headers["spheron-signature"]
    assert signature_verify(second, request.body, header)
    assert not signature_verify(first, request.body, header)
    assert renter_client.get(ALERTS).json()["webhook_secret"] is None


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"webhook_url": "http://example.com/hook"}, 400, "must start with https://"),
        ({"webhook_url": "https://10.0.0.7/hook"}, 400, "private or reserved"),
        ({"webhook_url": "https://[::1]/hook"}, 400, "private or reserved"),
        ({"webhook_url": "https://user:pw@example.com/hook"}, 400, "user name or password"),
        ({"webhook_url": "https://nowhere.invalid/hook"}, 400, "could not be found"),
        ({"webhook_url": "https://example.com:99999/hook"}, 400, "not a valid URL"),
        ({"webhook_url": "https://exa mple.com/"}, 400, "spaces"),
        ({"webhook_url": "https://x.example/" + "a" * 600}, 422, "webhook_url"),
        ({"webhook_url": "https://example.com/\x00"}, 422, "NUL"),
        ({"thresholds": ["1", "2", "3", "4", "5", "6"]}, 400, "at most 5 thresholds"),
        ({"thresholds": ["2000000"]}, 400, "at most $1,000,000"),
        ({"thresholds": ["0"]}, 422, "above zero"),
        ({"thresholds": [10]}, 422, "as a string"),
        ({"thresholds": ["-5"]}, 422, "two decimal places"),
        ({"thresholds": ["1e3"]}, 422, "two decimal places"),
        ({"thresholds": "10"}, 422, "thresholds"),
        ({"email_enabled": 1}, 422, "email_enabled"),
        ({"email_enabled": "yes"}, 422, "email_enabled"),
    ],
)
def test_bad_alert_settings_are_refused_with_a_message_and_change_nothing(
    renter, renter_client, settings, monkeypatch, body, status, message
):
    settings.DEBUG = False
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "nowhere.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    answer = put(renter_client, ALERTS, body)
    assert answer.status_code == status, answer.content
    assert message in answer.json()["message"]
    assert not BalanceAlert.objects.filter(user=renter).exists()


def test_each_user_sees_only_their_own_alerts(renter, renter_client, outsider, settings):
    settings.DEBUG = True
    fund(renter, 5 * USD)
    put(renter_client, ALERTS, {"thresholds": ["10"], "webhook_url": "http://127.0.0.1:9/hook"})
    outsider_client = Client()
    outsider_client.force_login(outsider)
    body = outsider_client.get(ALERTS).json()
    assert body["events"] == [] and body["thresholds"] == [] and body["webhook_url"] == ""
    assert body["email"] == outsider.email
    assert outsider_client.post(ROTATE).status_code == 409  # the renter's webhook is not theirs
    assert len(renter_client.get(ALERTS).json()["events"]) == 1


def test_auto_reload_defaults_and_where_to_save_a_card(renter, renter_client):
    body = renter_client.get(RELOAD).json()
    assert body["enabled"] is False and body["card_saved"] is False and body["card_label"] == ""
    assert (body["threshold"], body["amount"], body["minimum_amount"]) == ("10.000000", "20.000000", "20.000000")
    assert body["card_setup_url"] == "http://testserver/billing/alerts/#auto-reload"
    assert body["attempts"] == [] and body["attempt"] is None


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"amount": "19.99"}, 400, "at least $20.00"),
        ({"amount": "10001"}, 400, "at most $10,000"),
        ({"threshold": "10001"}, 400, "between $0 and $10,000"),
        ({"enabled": True}, 400, "Save a card first"),
        ({"amount": "20.001"}, 422, "two decimal places"),
        ({"amount": 25}, 422, "as a string"),
        ({"threshold": "abc"}, 422, "two decimal places"),
        ({"enabled": "true"}, 422, "enabled"),
    ],
)
def test_bad_auto_reload_settings_are_refused_with_a_message(renter, renter_client, body, status, message):
    answer = put(renter_client, RELOAD, body)
    assert answer.status_code == status, answer.content
    assert message in answer.json()["message"]
    assert not AutoReload.objects.filter(user=renter, enabled=True).exists()


def test_auto_reload_through_the_api_with_a_card_saved_on_the_page(
    renter, renter_client, stripe_client, stripe_settings
):
    saved_card = save_card(stripe_client, renter_client)
    body = renter_client.get(RELOAD).json()
    assert body["card_saved"] is True and body["card_label"] == saved_card.card_label == "visa ending 4242"
    assert body["card_payments_available"] is True

    # Saved with the credits below the threshold: the card is charged at once.
    fund(renter, 8 * USD)
    answer = put(renter_client, RELOAD, {"enabled": True, "threshold": "10", "amount": "25.00"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["enabled"] is True and body["amount_micros"] == 25 * USD and body["threshold_micros"] == 10 * USD
    assert body["attempt"]["status"] == "succeeded" and body["attempt"]["amount"] == "25.000000"
    assert user_balances(user=renter).available == 33 * USD
    assert [a["id"] for a in renter_client.get(RELOAD).json()["attempts"]] == [body["attempt"]["id"]]

    # Above the threshold now: saving again charges nothing.
    again = put(renter_client, RELOAD, {"amount": "30"}).json()
    assert again["attempt"] is None and again["amount"] == "30.000000" and again["enabled"] is True

    removed = renter_client.delete(CARD)
    assert removed.status_code == 200, removed.content
    assert removed.json()["card_saved"] is False and removed.json()["enabled"] is False
    refused = put(renter_client, RELOAD, {"enabled": True})
    assert refused.status_code == 400 and "Save a card first" in refused.json()["message"]


# (method, path, body, the scope a refusal names, scopes that may make it)
SCOPED = [
    ("GET", ALERTS, None, "read", {"read", "billing", "full"}),
    ("PUT", ALERTS, {"thresholds": ["10"]}, "billing", {"billing", "full"}),
    ("POST", ROTATE, None, "billing", {"billing", "full"}),  # allowed: 409, no webhook yet
    ("GET", RELOAD, None, "read", {"read", "billing", "full"}),
    ("PUT", RELOAD, {"amount": "30"}, "billing", {"billing", "full"}),
    ("DELETE", CARD, None, "billing", {"billing", "full"}),
]


@pytest.mark.parametrize("scope", ["read", "deploy", "billing", "provider", "full"])
@pytest.mark.parametrize("route", SCOPED, ids=[f"{r[0]} {r[1]}" for r in SCOPED])
def test_api_key_scopes(renter, scope, route):
    method, path, body, needed, allowed = route
    AutoReload.objects.create(user=renter, stripe_payment_method_id="pm_x", card_label="visa ending 4242")
    _key, raw_key = api_key_create(user=renter, label=f"{scope} key", scopes=[scope])
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
    data = json.dumps(body) if body is not None else ""
    answer = client.generic(method, path, data, content_type="application/json", **headers)
    if scope in allowed:
        assert answer.status_code == (409 if path == ROTATE else 200), answer.content
    else:
        assert answer.status_code == 403, answer.content
        assert answer.json()["extra"]["required_scope"] == needed
        # A refused write changed nothing.
        assert not BalanceAlert.objects.filter(user=renter).exists()
        reload = AutoReload.objects.get(user=renter)
        assert (reload.amount, reload.stripe_payment_method_id) == (20 * USD, "pm_x")


def test_without_a_session_or_key_it_is_401(transactional_db):
    for method, path, *_ in SCOPED:
        answer = Client().generic(method, path, "{}", content_type="application/json")
        assert answer.status_code == 401, (method, path)


def test_a_session_needs_the_csrf_token_to_change_anything(renter):
    client = Client(enforce_csrf_checks=True)
    client.force_login(renter)
    assert client.get(ALERTS).status_code == 200
    assert put(client, ALERTS, {"thresholds": ["10"]}).status_code == 403
    assert client.delete(CARD).status_code == 403
    assert not BalanceAlert.objects.filter(user=renter).exists()
