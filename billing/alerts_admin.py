"""Low-balance alerts and auto-reload in the admin, all read-only.

The settings are the user's own (saved through `billing.alerts` and `billing.autoreload`, which
check webhook URLs and the reload minimum), and an auto-reload charges a card, so nothing here
edits or sends. The webhook's signing secret is never shown. Registered by `billing.admin`.
"""

from __future__ import annotations

import re

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.alerts import SENDING_STALE
from billing.models import AutoReload, AutoReloadAttempt, BalanceAlert, BalanceAlertDelivery, BalanceAlertEvent
from billing.runway import duration_words
from core import admin_tools
from core.money import format_usd


def usd_micros(micros: int | None) -> str:
    return "" if micros is None else format_usd(micros, places=6)


def usd_list(values: list) -> str:
    return ", ".join(usd_cents(value) for value in values if isinstance(value, int)) or "none"


def usd_cents(micros: int | None) -> str:
    return "" if micros is None else format_usd(micros, places=2)


@admin.register(BalanceAlert)
class BalanceAlertAdmin(admin_tools.ReadOnlyAdmin):
    list_display = ("user", "thresholds_usd", "fired_usd", "email_enabled", "webhook_url", "signed", "updated_at")
    list_filter = ("email_enabled", ("webhook_url", admin.EmptyFieldListFilter))
    search_fields = ("user__email", "webhook_url")
    list_select_related = ("user",)
    ordering = ("-updated_at", "-id")
    fields = ("user", "thresholds_usd", "fired_usd", "email_enabled", "webhook_url", "signed", "updated_at", "events")
    readonly_fields = fields

    @admin.display(description="Thresholds")
    def thresholds_usd(self, alert: BalanceAlert) -> str:
        return usd_list(alert.thresholds)

    @admin.display(description="Fired (balance below, told)")
    def fired_usd(self, alert: BalanceAlert) -> str:
        return usd_list(alert.fired)

    @admin.display(description="Webhook secret")
    def signed(self, alert: BalanceAlert) -> str:
        if not alert.webhook_url:
            return "no webhook"
        return "set (shown to the user once)" if alert.webhook_secret else "missing"

    @admin.display(description="Alerts sent")
    def events(self, alert: BalanceAlert) -> str:
        count = BalanceAlertEvent.objects.filter(user_id=alert.user_id).count()
        return admin_tools.changelist_link(BalanceAlertEvent, f"{count} crossing(s)", user__id__exact=alert.user_id)


class BalanceAlertDeliveryInline(admin_tools.ReadOnlyInline):
    model = BalanceAlertDelivery
    fields = ("channel", "target", "status", "attempts", "next_try", "response_status", "last_error", "delivered_at")
    readonly_fields = fields

    @admin.display(description="Next try")
    def next_try(self, delivery: BalanceAlertDelivery) -> str:
        return delivery_next_try(delivery)


def delivery_next_try(delivery: BalanceAlertDelivery) -> str:
    """When the delivery is tried again, or why it is not."""
    status = BalanceAlertDelivery.Status
    if delivery.status == status.PENDING:
        return f"{delivery.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
    if delivery.status == status.SENDING:
        # A worker that died mid-send leaves it SENDING: the sweep takes it again after SENDING_STALE.
        if delivery.last_attempt_at is None:
            return "sending"
        return f"sending; again after {delivery.last_attempt_at + SENDING_STALE:%Y-%m-%d %H:%M:%S} UTC if stuck"
    if delivery.status == status.SENT:
        return "none (delivered)"
    return f"none (gave up after {delivery.attempts} attempt{'' if delivery.attempts == 1 else 's'})"


@admin.register(BalanceAlertEvent)
class BalanceAlertEventAdmin(admin_tools.ReadOnlyAdmin):
    list_display = ("id", "created_at", "user", "threshold_usd", "available_usd", "spend_usd", "runway")
    search_fields = ("=id", "user__email")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    fields = ("user", "created_at", "threshold_usd", "available_usd", "spend_usd", "runway")
    readonly_fields = fields
    inlines = (BalanceAlertDeliveryInline,)

    @admin.display(description="Threshold", ordering="threshold")
    def threshold_usd(self, event: BalanceAlertEvent) -> str:
        return usd_cents(event.threshold)

    @admin.display(description="Available", ordering="available")
    def available_usd(self, event: BalanceAlertEvent) -> str:
        return usd_micros(event.available)

    @admin.display(description="Spend / hour", ordering="spend_per_hour")
    def spend_usd(self, event: BalanceAlertEvent) -> str:
        return usd_micros(event.spend_per_hour)

    @admin.display(description="Runway")
    def runway(self, event: BalanceAlertEvent) -> str:
        return "no spend" if event.runway_seconds is None else duration_words(event.runway_seconds)


@admin.register(BalanceAlertDelivery)
class BalanceAlertDeliveryAdmin(admin_tools.ReadOnlyAdmin):
    """The delivery log: each alert by each channel, with its retries."""

    list_display = (
        "id",
        "alert",
        "user_email",
        "channel",
        "target",
        "status",
        "attempts",
        "next_try",
        "last_attempt_at",
        "response_status",
        "error_short",
        "delivered_at",
    )
    list_filter = ("status", "channel")
    search_fields = ("=id", "event__user__email", "target")
    list_select_related = ("event", "event__user")
    ordering = ("-id",)
    fields = (
        "alert",
        "user_email",
        "channel",
        "target",
        "status",
        "attempts",
        "next_try",
        "last_attempt_at",
        "response_status",
        "last_error",
        "delivered_at",
    )
    readonly_fields = fields

    @admin.display(description="Alert", ordering="event")
    def alert(self, delivery: BalanceAlertDelivery) -> str:
        return admin_tools.change_link(delivery.event)

    @admin.display(description="User", ordering="event__user__email")
    def user_email(self, delivery: BalanceAlertDelivery) -> str:
        return delivery.event.user.email

    @admin.display(description="Next try", ordering="next_attempt_at")
    def next_try(self, delivery: BalanceAlertDelivery) -> str:
        return delivery_next_try(delivery)

    @admin.display(description="Last error")
    def error_short(self, delivery: BalanceAlertDelivery) -> str:
        return delivery.last_error[:80]


@admin.register(AutoReload)
class AutoReloadAdmin(admin_tools.ReadOnlyAdmin):
    list_display = ("user", "enabled", "threshold_usd", "amount_usd", "card_label", "stripe_customer_id", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("user__email", "=stripe_customer_id", "=stripe_payment_method_id")
    list_select_related = ("user",)
    ordering = ("-updated_at", "-id")
    fields = (
        "user",
        "enabled",
        "threshold_usd",
        "amount_usd",
        "card_label",
        "stripe_customer_id",
        "stripe_payment_method_id",
        "setup_intent_id",
        "updated_at",
        "attempts",
    )
    readonly_fields = fields

    @admin.display(description="Threshold", ordering="threshold")
    def threshold_usd(self, reload: AutoReload) -> str:
        return usd_cents(reload.threshold)

    @admin.display(description="Amount", ordering="amount")
    def amount_usd(self, reload: AutoReload) -> str:
        return usd_cents(reload.amount)

    @admin.display(description="Attempts")
    def attempts(self, reload: AutoReload) -> str:
        count = AutoReloadAttempt.objects.filter(user_id=reload.user_id).count()
        return admin_tools.changelist_link(AutoReloadAttempt, f"{count} attempt(s)", user__id__exact=reload.user_id)


# What AutoReloadAttempt.idempotency_key reads: found by search, since it is not a column.
IDEMPOTENCY_KEY = re.compile(r"autoreload:(\d{1,19}):(\d{1,19})", re.ASCII)


@admin.register(AutoReloadAttempt)
class AutoReloadAttemptAdmin(admin_tools.ReadOnlyAdmin):
    """Off-session charges of saved cards; the idempotency key is the one Stripe was sent."""

    list_display = (
        "id",
        "created_at",
        "user",
        "amount_usd",
        "status",
        "outcome",
        "idempotency_key",
        "tries",
        "stripe_payment_intent_id",
        "topup_link",
        "finished_at",
    )
    list_filter = ("status", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "user__email", "=stripe_payment_intent_id")
    search_help_text = "User e-mail, payment intent id, attempt id, or the idempotency key (autoreload:<user>:<id>)."
    list_select_related = ("user", "topup")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    fields = (
        "user",
        "amount_usd",
        "reason",
        "status",
        "outcome",
        "idempotency_key",
        "tries",
        "stripe_payment_intent_id",
        "topup_link",
        "failure_message",
        "created_at",
        "finished_at",
    )
    readonly_fields = fields

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        key = IDEMPOTENCY_KEY.fullmatch(search_term.strip())
        if key:
            return queryset.filter(user_id=int(key.group(1)), id=int(key.group(2))), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="Amount", ordering="amount")
    def amount_usd(self, attempt: AutoReloadAttempt) -> str:
        return usd_cents(attempt.amount)

    @admin.display(description="Idempotency key")
    def idempotency_key(self, attempt: AutoReloadAttempt) -> str:
        return attempt.idempotency_key

    @admin.display(description="Outcome")
    def outcome(self, attempt: AutoReloadAttempt) -> str:
        status = AutoReloadAttempt.Status
        if attempt.status == status.SUCCEEDED:
            return f"Credited {usd_cents(attempt.amount)}"
        if attempt.status == status.FAILED:
            return f"Failed: {attempt.failure_message or 'no reason recorded'}"
        return f"Charging the card ({attempt.tries} call{'' if attempt.tries == 1 else 's'} to Stripe so far)"

    @admin.display(description="Top-up")
    def topup_link(self, attempt: AutoReloadAttempt) -> str:
        return admin_tools.change_link(
            attempt.topup, f"Top-up #{attempt.topup_id} ({attempt.topup.get_status_display()})"
        )
