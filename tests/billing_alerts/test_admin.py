"""The admin of low-balance alerts and card auto-reload: read-only, searchable by the user's e-mail,
the delivery log with its status, attempts and next try (made by real attempts against a local
receiver), auto-reload attempts with their Stripe idempotency key and outcome. The webhook's
signing secret is never shown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from accounts.models import User
from billing.alerts import alert_delivery_attempt, balance_alert_update, balance_alerts_check
from billing.autoreload import autoreload_update
from billing.models import (
    AutoReload,
    AutoReloadAttempt,
    BalanceAlert,
    BalanceAlertDelivery,
    BalanceAlertEvent,
    TopUp,
)
from tests.billing_alerts.conftest import T0, USD, fund
from tests.billing_alerts.receiver import webhook_receiver
from tests.factories import make_user

MODELS = (BalanceAlert, BalanceAlertEvent, BalanceAlertDelivery, AutoReload, AutoReloadAttempt)


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:billing_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def admin_user(transactional_db) -> User:
    return make_user(email="admin@example.test", is_staff=True, is_superuser=True)


@pytest.fixture
def admin(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def rows(renter, outsider, settings) -> dict:
    """The renter: alerts by e-mail (delivered) and webhook (answered 503, waiting to be tried
    again), auto-reload on with a succeeded and a failed attempt. The outsider: a webhook whose
    receiver is gone (given up after one attempt) and an attempt still charging."""
    settings.DEBUG = True  # loopback receivers
    with webhook_receiver() as receiver:
        receiver.answers = [503]
        saved = balance_alert_update(
            user=renter, thresholds=[10 * USD, 5 * USD], email_enabled=True, webhook_url=receiver.url
        )
        fund(renter, 8 * USD)
        (event,) = balance_alerts_check(user_id=renter.id, now=T0)
        email = event.deliveries.get(channel=BalanceAlertDelivery.Channel.EMAIL)
        webhook = event.deliveries.get(channel=BalanceAlertDelivery.Channel.WEBHOOK)
        alert_delivery_attempt(delivery_id=email.id, now=T0)
        alert_delivery_attempt(delivery_id=webhook.id, now=T0)
    gone = receiver.url  # nothing listens there any more

    settings.BALANCE_ALERT_MAX_ATTEMPTS = 1
    balance_alert_update(user=outsider, thresholds=[4 * USD], email_enabled=False, webhook_url=gone)
    fund(outsider, 3 * USD)
    (outsider_event,) = balance_alerts_check(user_id=outsider.id, now=T0)
    failed = outsider_event.deliveries.get()
    alert_delivery_attempt(delivery_id=failed.id, now=T0)

    AutoReload.objects.create(
        user=renter,
        stripe_customer_id="cus_renter",
        stripe_payment_method_id="pm_renter",
        card_label="visa ending 4242",
    )
    autoreload_update(user=renter, enabled=True, threshold=10 * USD, amount=25 * USD)

    def attempt(user: User, status: str, *, tries: int, intent: str = "", failure: str = "") -> AutoReloadAttempt:
        topup_status = {"succeeded": TopUp.Status.SUCCEEDED, "failed": TopUp.Status.FAILED}.get(status, "pending")
        topup = TopUp.objects.create(user=user, amount=25 * USD, status=topup_status)
        return AutoReloadAttempt.objects.create(
            user=user,
            amount=25 * USD,
            reason="Available credits $8.00 fell below $10.00",
            status=status,
            topup=topup,
            stripe_payment_intent_id=intent,
            failure_message=failure,
            tries=tries,
            created_at=T0,
            finished_at=None if status == "processing" else T0 + timedelta(seconds=2),
        )

    return {
        "secret": saved.new_secret,
        "event": event,
        "email": email,
        "webhook": webhook,
        "failed": failed,
        "credited": attempt(renter, "succeeded", tries=1, intent="pi_credited"),
        "declined": attempt(renter, "failed", tries=1, intent="pi_declined", failure="Your card was declined."),
        "charging": attempt(outsider, "processing", tries=2),
    }


def row_of(rows: dict, model) -> object:
    return {
        BalanceAlert: BalanceAlert.objects.get(user=rows["event"].user),
        BalanceAlertEvent: rows["event"],
        BalanceAlertDelivery: rows["webhook"],
        AutoReload: AutoReload.objects.get(user=rows["event"].user),
        AutoReloadAttempt: rows["credited"],
    }[model]


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_alert_and_reload_model_is_listed_and_read_only(admin, rows, model):
    row = row_of(rows, model)

    listing = admin.get(admin_url(model, "changelist"))
    detail = admin.get(admin_url(model, "change", row.pk))
    edit = admin.post(admin_url(model, "change", row.pk), {"enabled": "on", "status": "sent"})

    assert listing.status_code == 200 and detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert edit.status_code == 403
    assert admin.get(admin_url(model, "add")).status_code == 403
    assert admin.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert b"delete_selected" not in listing.content
    assert model.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_each_list_is_searchable_by_the_users_email(admin, rows, renter, outsider, model):
    def owners(query: str) -> set[str]:
        listing = admin.get(admin_url(model, "changelist"), {"q": query})
        assert listing.status_code == 200
        results = listing.context["cl"].result_list
        return {(row.event.user if model is BalanceAlertDelivery else row.user).email for row in results}

    expected_outsider = set() if model is AutoReload else {outsider.email}  # the outsider has no auto-reload
    assert owners(renter.email) == {renter.email}
    assert owners(outsider.email) == expected_outsider
    assert owners("nobody@example.test") == set()


def test_delivery_log_shows_status_attempts_and_next_try(admin, rows):
    listing = admin.get(admin_url(BalanceAlertDelivery, "changelist"))
    html = listing.content.decode()
    by_id = {row.id: row for row in listing.context["cl"].result_list}

    assert set(by_id) == {rows["email"].id, rows["webhook"].id, rows["failed"].id}
    # The webhook answered 503: waiting, one attempt made, tried again 30 s later (the first backoff).
    webhook = by_id[rows["webhook"].id]
    assert (webhook.status, webhook.attempts, webhook.response_status) == ("pending", 1, 503)
    next_try = T0 + timedelta(seconds=30)
    assert f"{next_try:%Y-%m-%d %H:%M:%S} UTC" in html
    assert "Waiting to be sent" in html and "The receiver answered HTTP 503." in html
    # The e-mail went out; the outsider's webhook was given up after its one allowed attempt.
    assert by_id[rows["email"].id].status == "sent" and "none (delivered)" in html
    assert by_id[rows["failed"].id].status == "failed" and "none (gave up after 1 attempt)" in html
    assert "Failed (gave up)" in html

    waiting = admin.get(admin_url(BalanceAlertDelivery, "changelist"), {"status__exact": "pending"})
    assert [row.id for row in waiting.context["cl"].result_list] == [rows["webhook"].id]

    event_page = admin.get(admin_url(BalanceAlertEvent, "change", rows["event"].pk)).content.decode()
    assert "$10.00" in event_page and "$8.00" in event_page  # the threshold crossed, the balance then
    assert event_page.count(f"{next_try:%Y-%m-%d %H:%M:%S} UTC") == 1  # the inline's webhook row


def test_webhook_secret_is_never_shown(admin, rows, renter):
    alert = BalanceAlert.objects.get(user=renter)
    assert rows["secret"] and alert.webhook_secret == rows["secret"]

    pages = [
        admin.get(admin_url(BalanceAlert, "changelist")),
        admin.get(admin_url(BalanceAlert, "change", alert.pk)),
        admin.get(admin_url(BalanceAlertDelivery, "changelist")),
    ]

    assert all(rows["secret"] not in page.content.decode() for page in pages)
    detail = pages[1].content.decode()
    assert "set (shown to the user once)" in detail
    assert "$10.00, $5.00" in detail  # the thresholds
    assert "1 crossing(s)" in detail


def test_autoreload_attempts_show_their_idempotency_key_and_outcome(admin, rows, renter, outsider):
    listing = admin.get(admin_url(AutoReloadAttempt, "changelist"))
    html = listing.content.decode()

    for name in ("credited", "declined", "charging"):
        attempt = rows[name]
        assert f"autoreload:{attempt.user_id}:{attempt.id}" in html
    assert "Credited $25.00" in html
    assert "Failed: Your card was declined." in html
    assert "Charging the card (2 calls to Stripe so far)" in html

    declined = rows["declined"]
    detail = admin.get(admin_url(AutoReloadAttempt, "change", declined.pk)).content.decode()
    assert f"autoreload:{renter.id}:{declined.id}" in detail and "pi_declined" in detail
    assert f"Top-up #{declined.topup_id} (Failed)" in detail


def test_an_attempt_is_found_by_its_idempotency_key(admin, rows, renter, outsider):
    url = admin_url(AutoReloadAttempt, "changelist")
    declined = rows["declined"]

    def found(query: str) -> list[int]:
        return [row.id for row in admin.get(url, {"q": query}).context["cl"].result_list]

    assert found(f"autoreload:{renter.id}:{declined.id}") == [declined.id]
    assert found(f"  autoreload:{renter.id}:{declined.id} ") == [declined.id]
    assert found(f"autoreload:{outsider.id}:{declined.id}") == []  # another user's key: not this attempt
    assert found("autoreload:99999999999999999999999:1") == []  # too long to be an id: a plain search
    assert found("pi_credited") == [rows["credited"].id]


def test_autoreload_settings_show_amounts_and_card(admin, rows, renter):
    reload = AutoReload.objects.get(user=renter)

    detail = admin.get(admin_url(AutoReload, "change", reload.pk)).content.decode()

    assert "$10.00" in detail and "$25.00" in detail and "visa ending 4242" in detail
    assert "cus_renter" in detail and "2 attempt(s)" in detail
    listing = admin.get(admin_url(AutoReload, "changelist"), {"enabled__exact": "1"})
    assert [row.user_id for row in listing.context["cl"].result_list] == [renter.id]


def test_viewing_needs_the_view_permission_and_never_allows_changes(rows, outsider):
    staff = make_user(email="support@example.test", is_staff=True)
    client = Client()
    client.force_login(staff)
    url = admin_url(AutoReloadAttempt, "changelist")
    assert client.get(url).status_code == 403

    staff.user_permissions.add(
        Permission.objects.get(codename="view_autoreloadattempt"),
        Permission.objects.get(codename="change_autoreloadattempt"),
    )
    attempt = rows["credited"]
    assert client.get(url).status_code == 200
    assert client.post(admin_url(AutoReloadAttempt, "change", attempt.pk), {"status": "failed"}).status_code == 403
    attempt.refresh_from_db()
    assert attempt.status == "succeeded"

    stranger = Client()
    stranger.force_login(outsider)  # not staff: sent to the admin's login
    assert stranger.get(url).status_code == 302
