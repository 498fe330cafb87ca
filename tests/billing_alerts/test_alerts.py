"""Low-balance alerts: once per crossing, e-mail and a signed webhook to a real local receiver,
retries with backoff, and the URL checks that keep the server from posting into its own network."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from django.core import mail

from billing.alerts import (
    SIGNATURE_HEADER,
    alert_deliveries_due,
    alert_delivery_attempt,
    balance_alert_update,
    balance_alerts_check,
    signature_verify,
    webhook_url_validate,
)
from billing.models import BalanceAlertDelivery, BalanceAlertEvent
from billing.services import hold_place, hold_release
from core.errors import ApplicationError
from tests.billing_alerts.conftest import T0, USD, fund
from tests.billing_alerts.receiver import webhook_receiver


def spend(user, amount: int, ref: str):
    return hold_place(user=user, amount=amount, reference_type="test", reference_id=ref)


def deliver_all(now):
    for delivery in BalanceAlertDelivery.objects.filter(status=BalanceAlertDelivery.Status.PENDING):
        alert_delivery_attempt(delivery_id=delivery.id, now=now)


def test_alert_fires_once_per_crossing_and_rearms_above(renter, settings):
    settings.DEBUG = True
    fund(renter, 30 * USD)
    balance_alert_update(user=renter, thresholds=[10 * USD], email_enabled=True, webhook_url="")
    assert balance_alerts_check(user_id=renter.id, now=T0) == []  # $30: above

    spend(renter, 25 * USD, "a")  # $5: crossed down
    (event,) = balance_alerts_check(user_id=renter.id, now=T0)
    assert (event.threshold, event.available) == (10 * USD, 5 * USD)
    deliver_all(T0)
    assert len(mail.outbox) == 1 and "below $10.00" in mail.outbox[0].subject
    assert mail.outbox[0].to == [renter.email]

    spend(renter, 2 * USD, "b")  # $3: lower again, still below: nothing new
    assert balance_alerts_check(user_id=renter.id, now=T0 + timedelta(minutes=1)) == []
    assert balance_alerts_check(user_id=renter.id, now=T0 + timedelta(minutes=2)) == []

    fund(renter, 20 * USD)  # $23: back above, re-armed, no alert
    assert balance_alerts_check(user_id=renter.id, now=T0 + timedelta(minutes=3)) == []
    spend(renter, 20 * USD, "c")  # $3: crossed down again: a second alert
    assert len(balance_alerts_check(user_id=renter.id, now=T0 + timedelta(minutes=4))) == 1
    deliver_all(T0 + timedelta(minutes=4))
    assert len(mail.outbox) == 2
    assert BalanceAlertEvent.objects.filter(user=renter).count() == 2


def test_crossing_several_thresholds_at_once_sends_one_alert_for_the_lowest(renter, settings):
    fund(renter, 100 * USD)
    balance_alert_update(user=renter, thresholds=[50 * USD, 10 * USD, 25 * USD], email_enabled=True, webhook_url="")
    spend(renter, 95 * USD, "a")
    (event,) = balance_alerts_check(user_id=renter.id, now=T0)
    assert event.threshold == 10 * USD
    hold_release(hold=spend(renter, 1 * USD, "b"))  # nothing crossed again
    assert balance_alerts_check(user_id=renter.id, now=T0) == []
    fund(renter, 25 * USD)  # $30: above 10 and 25, still below 50
    balance_alerts_check(user_id=renter.id, now=T0)
    spend(renter, 10 * USD, "c")  # $20: below 25 again (re-armed), not below 10
    (again,) = balance_alerts_check(user_id=renter.id, now=T0)
    assert again.threshold == 25 * USD


def test_signed_webhook_reaches_a_local_receiver(renter, settings):
    settings.DEBUG = True
    fund(renter, 12 * USD)
    with webhook_receiver() as receiver:
        saved = balance_alert_update(user=renter, thresholds=[10 * USD], email_enabled=False, webhook_url=receiver.url)
        secret = saved.new_secret
        assert secret and secret.startswith("sphwhsec_")
        spend(renter, 4 * USD, "a")
        balance_alerts_check(user_id=renter.id, now=T0)
        (delivery,) = BalanceAlertDelivery.objects.all()
        assert delivery.channel == "webhook"
        alert_delivery_attempt(delivery_id=delivery.id, now=T0)

    (request,) = receiver.requests
    assert request.path == "/hooks/spheron"
    header = request.headers[SIGNATURE_HEADER.lower()]
    assert signature_verify(secret, request.body, header, now=int(T0.timestamp()))
    assert not signature_verify(secret, request.body + b" ", header, now=int(T0.timestamp()))
    assert not signature_verify("sphwhsec_wrong", request.body, header, now=int(T0.timestamp()))
    assert not signature_verify(secret, request.body, header, now=int(T0.timestamp()) + 3600)  # replayed later
    body = json.loads(request.body)
    assert body["type"] == "balance.low"
    assert body["data"]["threshold"] == "10.000000" and body["data"]["available_micros"] == 8 * USD
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("sent", 1, 200)
    assert mail.outbox == []  # e-mail was off


def test_failed_webhook_is_retried_with_backoff_then_given_up(renter, settings):
    settings.DEBUG = True
    settings.BALANCE_ALERT_MAX_ATTEMPTS = 3
    fund(renter, 12 * USD)
    with webhook_receiver() as receiver:
        receiver.answers = [500, 503]
        balance_alert_update(user=renter, thresholds=[10 * USD], email_enabled=False, webhook_url=receiver.url)
        spend(renter, 4 * USD, "a")
        balance_alerts_check(user_id=renter.id, now=T0)
        (delivery,) = BalanceAlertDelivery.objects.all()

        alert_delivery_attempt(delivery_id=delivery.id, now=T0)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.response_status, delivery.attempts) == ("pending", 500, 1)
        assert delivery.next_attempt_at == T0 + timedelta(seconds=30)
        assert alert_deliveries_due(now=T0 + timedelta(seconds=29)) == 0  # not due yet
        assert alert_deliveries_due(now=T0 + timedelta(seconds=30)) == 1
        delivery.refresh_from_db()
        assert (delivery.status, delivery.response_status, delivery.attempts) == ("pending", 503, 2)
        assert delivery.next_attempt_at == T0 + timedelta(seconds=30 + 120)
        alert_delivery_attempt(delivery_id=delivery.id, now=T0 + timedelta(seconds=150))
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("sent", 3)
        assert len(receiver.requests) == 3

    # A receiver that is gone: the last attempt gives up.
    balance_alert_update(user=renter, thresholds=[10 * USD], email_enabled=False, webhook_url=receiver.url)
    fund(renter, 10 * USD)
    balance_alerts_check(user_id=renter.id, now=T0)
    spend(renter, 10 * USD, "b")
    balance_alerts_check(user_id=renter.id, now=T0)
    second = BalanceAlertDelivery.objects.exclude(id=delivery.id).get()
    when = T0
    for _ in range(3):
        alert_delivery_attempt(delivery_id=second.id, now=when)
        when += timedelta(hours=1)
    second.refresh_from_db()
    assert second.status == "failed" and second.attempts == 3 and "ConnectionError" in second.last_error


def test_slow_receiver_times_out(renter, settings):
    settings.DEBUG = True
    settings.BALANCE_ALERT_WEBHOOK_TIMEOUT_SECONDS = 0.5
    fund(renter, 12 * USD)
    with webhook_receiver() as receiver:
        receiver.delay_seconds = 2
        balance_alert_update(user=renter, thresholds=[10 * USD], email_enabled=False, webhook_url=receiver.url)
        spend(renter, 4 * USD, "a")
        balance_alerts_check(user_id=renter.id, now=T0)
        delivery = alert_delivery_attempt(delivery_id=BalanceAlertDelivery.objects.get().id, now=T0)
    assert delivery.status == "pending" and "Timeout" in delivery.last_error


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/hook", "https://"),
        ("https://127.0.0.1/hook", "private or reserved"),
        ("https://localhost/hook", "private or reserved"),
        ("https://10.1.2.3/hook", "private or reserved"),
        ("https://192.168.0.10:8443/hook", "private or reserved"),
        ("https://169.254.169.254/latest/meta-data", "private or reserved"),
        ("https://[::1]/hook", "private or reserved"),
        ("https://[::ffff:10.0.0.1]/hook", "private or reserved"),
        ("https://100.64.0.1/hook", "private or reserved"),
        ("https://user:pw@example.com/hook", "user name or password"),
        ("ftp://example.com/hook", "https://"),
        ("https:///nohost", "no host"),
    ],
)
def test_ssrf_guard_refuses_in_production(settings, url, message):
    settings.DEBUG = False
    with pytest.raises(ApplicationError) as refused:
        webhook_url_validate(url)
    assert message in refused.value.message


def test_ssrf_guard_refuses_a_name_that_resolves_privately(settings, monkeypatch):
    settings.DEBUG = False
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443))]
    )
    with pytest.raises(ApplicationError, match="private or reserved"):
        webhook_url_validate("https://hooks.example.com/x")
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
    )
    assert webhook_url_validate("https://hooks.example.com/x") == "https://hooks.example.com/x"


def test_a_webhook_rebound_to_a_private_address_is_not_posted(renter, settings, monkeypatch):
    """Checked again before each attempt: a host that resolved publicly when saved and privately now."""
    settings.DEBUG = False
    fund(renter, 12 * USD)
    public = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: public)
    balance_alert_update(user=renter, thresholds=[10 * USD], email_enabled=False, webhook_url="https://h.example.com/")
    spend(renter, 4 * USD, "a")
    balance_alerts_check(user_id=renter.id, now=T0)
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 443))]
    )
    delivery = alert_delivery_attempt(delivery_id=BalanceAlertDelivery.objects.get().id, now=T0)
    assert delivery.status == "pending" and "private or reserved" in delivery.last_error


def test_alerts_page_saves_shows_the_secret_once_and_the_log(renter, renter_client, settings):
    settings.DEBUG = True
    fund(renter, 12 * USD)
    with webhook_receiver() as receiver:
        answer = renter_client.post(
            "/billing/alerts/", {"thresholds": "10, 5", "email_enabled": "on", "webhook_url": receiver.url}
        )
        assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
        secret = answer.context["new_secret"]
        assert secret in answer.content.decode()
        page = renter_client.get("/billing/alerts/").content.decode()
        assert secret not in page and "A signing secret is set" in page
        spend(renter, 4 * USD, "a")
        balance_alerts_check(user_id=renter.id, now=T0)
        deliver_all(T0)
    page = renter_client.get("/billing/alerts/").content.decode()
    assert 'data-channel="webhook" data-status="sent"' in page
    assert 'data-channel="email" data-status="sent"' in page


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"thresholds": "ten", "email_enabled": "on"}, "at most two decimal places"),
        ({"thresholds": "1,2,3,4,5,6"}, "at most 5"),
        ({"thresholds": "10", "webhook_url": "ftp://x.example/"}, "https://"),
    ],
)
def test_alerts_page_refuses_bad_input_with_400(renter_client, settings, form, error):
    answer = renter_client.post("/billing/alerts/", form)
    assert answer.status_code == 400
    assert error in answer.content.decode()


def test_outsider_sees_only_their_own_log(renter, outsider, settings):
    from django.test import Client

    fund(renter, 12 * USD)
    balance_alert_update(user=renter, thresholds=[10 * USD], email_enabled=True, webhook_url="")
    spend(renter, 4 * USD, "a")
    balance_alerts_check(user_id=renter.id, now=T0)
    client = Client()
    client.force_login(outsider)
    page = client.get("/billing/alerts/").content.decode()
    assert 'data-testid="no-deliveries"' in page and renter.email not in page
