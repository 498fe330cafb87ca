"""Billing admin: every model browsable and read-only; money moves only by the two reasoned actions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from billing.models import (
    AccountKind,
    Hold,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PayoutRequest,
    StripeEvent,
    TopUp,
    TransactionKind,
    UsageMeter,
)
from billing.services import hold_place, topup_credit
from tests.billing_stripe.conftest import USD, assert_ledger_consistent, available
from tests.factories import make_user

MODELS = (LedgerAccount, LedgerTransaction, LedgerEntry, StripeEvent, TopUp, Hold, UsageMeter, PayoutRequest)


@pytest.fixture
def admin_user(db) -> User:
    return make_user(email="admin@example.test", is_staff=True, is_superuser=True)


@pytest.fixture
def admin(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def developer(db) -> User:
    return make_user(email="developer@example.test", is_developer=True)


@pytest.fixture
def billing_rows(developer) -> dict[type, object]:
    """One row of every billing model."""
    credit = topup_credit(
        user=developer,
        amount=50 * USD,
        reference_type="stripe_payment_intent",
        reference_id="pi_1",
        idempotency_key="k1",
    )
    topup = TopUp.objects.create(
        user=developer, amount=50 * USD, status=TopUp.Status.SUCCEEDED, stripe_payment_intent_id="pi_1", credit=credit
    )
    hold = hold_place(user=developer, amount=10 * USD, reference_type="lease", reference_id="1")
    provider = make_user(email="provider@example.test", is_provider=True)
    meter = UsageMeter.objects.create(
        hold=hold,
        renter=developer,
        payee=provider,
        reference_id="1",
        price_per_hour=2 * USD,
        fee_rate=Decimal("0.07"),
        started_at=timezone.now(),
    )
    event = StripeEvent.objects.create(
        event_id="evt_1", type="payment_intent.succeeded", payload={"id": "evt_1"}, status=StripeEvent.Status.PROCESSED
    )
    payout = PayoutRequest.objects.create(user=provider, amount=1 * USD, destination="0x" + "ab" * 20)
    return {
        LedgerAccount: LedgerAccount.objects.get(kind=AccountKind.USER_AVAILABLE, user=developer),
        LedgerTransaction: credit,
        LedgerEntry: credit.entries.first(),
        StripeEvent: event,
        TopUp: topup,
        Hold: hold,
        UsageMeter: meter,
        PayoutRequest: payout,
    }


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:billing_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_billing_model_is_listed_and_read_only(admin, billing_rows, model):
    row = billing_rows[model]

    listing = admin.get(admin_url(model, "changelist"))
    detail = admin.get(admin_url(model, "change", row.pk))

    assert listing.status_code == 200
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert admin.get(admin_url(model, "add")).status_code == 403
    assert admin.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=row.pk).exists()


def test_ledger_transactions_can_be_searched_and_filtered(admin, billing_rows):
    url = admin_url(LedgerTransaction, "changelist")

    found = admin.get(url, {"q": "k1"})
    filtered_out = admin.get(url, {"kind__exact": TransactionKind.REFUND})

    assert found.context["cl"].result_count == 1
    assert filtered_out.context["cl"].result_count == 0


def test_stripe_event_page_shows_the_raw_payload(admin, billing_rows):
    event = billing_rows[StripeEvent]

    page = admin.get(admin_url(StripeEvent, "change", event.pk))

    assert b"&quot;evt_1&quot;" in page.content


def adjust(client: Client, account: LedgerAccount, **form) -> object:
    data = {"action": "adjust_available", "_selected_action": [account.pk], **form}
    return client.post(admin_url(LedgerAccount, "changelist"), data)


def test_manual_adjustment_needs_a_reason_and_records_the_admin(admin, admin_user, developer, billing_rows):
    account = billing_rows[LedgerAccount]
    before = available(developer)

    assert b"adjust_available" in admin.get(admin_url(LedgerAccount, "changelist")).content
    form_page = adjust(admin, account)
    missing_reason = adjust(admin, account, apply="1", amount_usd="12.5", reason="  ")
    assert form_page.status_code == missing_reason.status_code == 200
    assert b"Post adjustment" in form_page.content
    assert LedgerTransaction.objects.filter(kind=TransactionKind.ADJUSTMENT).count() == 0

    done = adjust(admin, account, apply="1", amount_usd="12.5", reason="Goodwill credit for outage #7")

    assert done.status_code == 302
    adjustment = LedgerTransaction.objects.get(kind=TransactionKind.ADJUSTMENT)
    assert adjustment.created_by == admin_user
    assert adjustment.memo == "Goodwill credit for outage #7"
    assert available(developer) == before + 12_500_000
    assert_ledger_consistent()


@pytest.mark.parametrize("amount", ["٣", "３", "1e3", "12.5000001", "1000001", "0"])
def test_manual_adjustment_takes_plain_ascii_dollars_only(admin, developer, billing_rows, amount):
    before = available(developer)

    page = adjust(admin, billing_rows[LedgerAccount], apply="1", amount_usd=amount, reason="Typo check")

    assert page.status_code == 200 and b"errorlist" in page.content
    assert available(developer) == before
    assert LedgerTransaction.objects.filter(kind=TransactionKind.ADJUSTMENT).count() == 0


def test_manual_debit_cannot_overdraw_the_user(admin, developer, billing_rows):
    account = billing_rows[LedgerAccount]
    before = available(developer)

    page = adjust(admin, account, apply="1", amount_usd="-1000", reason="Clawback")

    assert page.status_code == 200
    assert b"Insufficient funds" in page.content
    assert available(developer) == before
    assert LedgerTransaction.objects.filter(kind=TransactionKind.ADJUSTMENT).count() == 0


def test_adjustment_applies_only_to_one_available_credits_account(admin, developer, billing_rows):
    reserved = LedgerAccount.objects.get(kind=AccountKind.USER_RESERVED, user=developer)

    adjust(admin, reserved, apply="1", amount_usd="5", reason="Wrong account")

    assert LedgerTransaction.objects.filter(kind=TransactionKind.ADJUSTMENT).count() == 0


def test_reverse_action_posts_one_mirror_transaction_with_a_reason(admin, admin_user, developer):
    credit = topup_credit(
        user=developer,
        amount=5 * USD,
        reference_type="stripe_payment_intent",
        reference_id="pi_2",
        idempotency_key="k2",
    )
    data = {"action": "reverse_transactions", "_selected_action": [credit.pk]}
    url = admin_url(LedgerTransaction, "changelist")

    admin.post(url, {**data, "apply": "1", "reason": "Credited twice by mistake"})
    again = admin.post(url, {**data, "apply": "1", "reason": "Credited twice by mistake"}, follow=True)

    reversal = LedgerTransaction.objects.get(kind=TransactionKind.REVERSAL)
    assert reversal.reverses == credit
    assert reversal.created_by == admin_user
    assert reversal.memo == "Credited twice by mistake"
    assert b"already reversed" in again.content
    assert available(developer) == 0
    assert_ledger_consistent()


def test_replay_action_reprocesses_failed_events_only(admin):
    failed = StripeEvent.objects.create(
        event_id="evt_failed",
        type="customer.created",
        payload={"id": "evt_failed", "type": "customer.created", "data": {"object": {"id": "cus_1"}}},
        status=StripeEvent.Status.FAILED,
        error="boom",
    )
    done = StripeEvent.objects.create(
        event_id="evt_done", type="customer.created", payload={}, status=StripeEvent.Status.PROCESSED
    )

    page = admin.post(
        admin_url(StripeEvent, "changelist"),
        {"action": "replay", "_selected_action": [failed.pk, done.pk]},
        follow=True,
    )

    failed.refresh_from_db()
    assert failed.status == StripeEvent.Status.IGNORED
    assert failed.attempts == 1
    assert b"only failed events can be replayed" in page.content
    done.refresh_from_db()
    assert done.status == StripeEvent.Status.PROCESSED


def test_staff_without_billing_permissions_cannot_move_money(developer, billing_rows):
    staff = make_user(email="support@example.test", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_ledgeraccount", "view_ledgertransaction", "view_stripeevent"])
    )
    client = Client()
    client.force_login(staff)
    account = billing_rows[LedgerAccount]

    listing = client.get(admin_url(LedgerAccount, "changelist"))
    adjust(client, account, apply="1", amount_usd="100", reason="Sneaky")

    assert listing.status_code == 200
    assert b"adjust_available" not in listing.content
    assert LedgerTransaction.objects.filter(kind=TransactionKind.ADJUSTMENT).count() == 0
    assert available(developer) == 40 * USD
