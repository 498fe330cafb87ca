"""/api/v1/billing/alerts and /api/v1/billing/autoreload: low-balance alerts and card auto-reload
from a terminal, as on the page /billing/alerts/. Thin: billing.alerts and billing.autoreload do the
work. Session or API key auth; reading needs the `read` (or `billing`) scope, changing needs
`billing` (accounts.auth derives both from the method and path).

Amounts go both ways as USD strings (at most two decimal places, like POST /billing/topups) and
come back with their micro-USD integers, like GET /billing/balance. A webhook's signing secret is in
an answer once: the one that created it (a first webhook URL, or the rotation); such answers are
`Cache-Control: no-store`. Saving a card needs Stripe.js in a browser: GET /billing/autoreload
gives the page that does it (`card_setup_url`)."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Router
from pydantic import BaseModel, Field, StrictBool, ValidationInfo, field_validator

from accounts.auth import api_auth
from accounts.models import User
from billing.alerts import (
    SIGNATURE_HEADER,
    AlertSettingsSaved,
    alert_events_recent,
    balance_alert_update,
    balance_alerts_check,
    webhook_secret_rotate,
)
from billing.autoreload import autoreload_card_remove, autoreload_run, autoreload_update, minimum_micros
from billing.forms import parse_usd_amount
from billing.models import AutoReload, AutoReloadAttempt, BalanceAlert, BalanceAlertDelivery, BalanceAlertEvent
from billing.stripe_service import card_payments_configured
from core.errors import ApplicationError
from core.money import exact_usd
from core.schemas import ERRORS, NoNulIn

router = Router(tags=["billing"], auth=api_auth)

EVENTS_SHOWN = 20
ATTEMPTS_SHOWN = 20
# The page's defaults for a user who never saved auto-reload settings (AutoReload's field defaults).
_RELOAD_DEFAULTS = AutoReload(threshold=10_000_000, amount=20_000_000)


def _user(request: HttpRequest) -> User:
    return request.auth  # type: ignore[attr-defined, return-value]


def _page_url(request: HttpRequest, anchor: str = "") -> str:
    return request.build_absolute_uri(reverse("billing_alerts")) + anchor


def _usd(value: object, field: str) -> str:
    """A USD amount string (parse_usd_amount's rules), as a pydantic error when it is not one."""
    try:
        parse_usd_amount(value, field=field)
    except ApplicationError as exc:
        raise ValueError(exc.message) from None
    return str(value).strip()


# --- Low-balance alerts --------------------------------------------------------------------------
class AlertDeliveryOut(BaseModel):
    id: int
    channel: BalanceAlertDelivery.Channel
    target: str = Field(description="The e-mail address or webhook URL it was sent to")
    status: BalanceAlertDelivery.Status
    attempts: int
    next_attempt_at: datetime | None = Field(description="When it is tried again; null once sent or given up")
    last_attempt_at: datetime | None
    response_status: int | None = Field(description="The webhook receiver's HTTP status at the last attempt")
    last_error: str
    delivered_at: datetime | None


class AlertEventOut(BaseModel):
    id: str = Field(description='The event id in the webhook body, e.g. "balert_12"')
    created_at: datetime
    threshold: str = Field(description="The threshold crossed, USD")
    threshold_micros: int
    available: str = Field(description="Available credits when the crossing was seen, USD")
    available_micros: int
    spend_per_hour: str
    spend_per_hour_micros: int
    runway_seconds: int | None
    deliveries: list[AlertDeliveryOut]


class AlertsOut(BaseModel):
    thresholds: list[str] = Field(description="Alert when available credits fall below each, USD, highest first")
    thresholds_micros: list[int]
    fired_micros: list[int] = Field(
        description="Thresholds the balance is below and was told about: quiet until it is back above them"
    )
    email_enabled: bool
    email: str = Field(description="Where e-mail alerts go (your account's address)")
    webhook_url: str = Field(description="Empty: no webhook")
    webhook_secret_set: bool = Field(description="Whether deliveries are signed; the secret is never shown again")
    webhook_secret: str | None = Field(
        description="The new signing secret, in the one answer that created it; null otherwise"
    )
    signature_header: str = Field(description="The header carrying t=<unix time>,v1=<hex HMAC-SHA256>")
    events: list[AlertEventOut] = Field(description=f"The latest {EVENTS_SHOWN} crossings, newest first")
    page_url: str


class AlertsIn(NoNulIn):
    """Omitted fields keep their value."""

    thresholds: list[str] | None = Field(
        None,
        max_length=20,
        description='USD amounts, e.g. ["25", "10.50"]; at most 5, each above $0 and at most $1,000,000; [] for none',
    )
    email_enabled: StrictBool | None = None
    webhook_url: str | None = Field(None, max_length=500, description='https URL; "" removes the webhook')

    @field_validator("thresholds", mode="before")
    @classmethod
    def _strict_thresholds(cls, value: object) -> object:
        if isinstance(value, list):
            return [_usd(item, "thresholds") for item in value]
        return value


def _delivery(delivery: BalanceAlertDelivery) -> dict:
    waiting = delivery.status in (BalanceAlertDelivery.Status.PENDING, BalanceAlertDelivery.Status.SENDING)
    return {
        "id": delivery.id,
        "channel": delivery.channel,
        "target": delivery.target,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at if waiting else None,
        "last_attempt_at": delivery.last_attempt_at,
        "response_status": delivery.response_status,
        "last_error": delivery.last_error,
        "delivered_at": delivery.delivered_at,
    }


def _event(event: BalanceAlertEvent) -> dict:
    return {
        "id": f"balert_{event.id}",
        "created_at": event.created_at,
        "threshold": exact_usd(event.threshold),
        "threshold_micros": event.threshold,
        "available": exact_usd(event.available),
        "available_micros": event.available,
        "spend_per_hour": exact_usd(event.spend_per_hour),
        "spend_per_hour_micros": event.spend_per_hour,
        "runway_seconds": event.runway_seconds,
        "deliveries": [_delivery(d) for d in sorted(event.deliveries.all(), key=lambda d: d.id)],
    }


def _alerts(request: HttpRequest, alert: BalanceAlert | None, *, new_secret: str | None = None) -> dict:
    user = _user(request)
    return {
        "thresholds": [exact_usd(t) for t in alert.thresholds] if alert else [],
        "thresholds_micros": list(alert.thresholds) if alert else [],
        "fired_micros": list(alert.fired) if alert else [],
        "email_enabled": alert.email_enabled if alert else True,
        "email": user.email,
        "webhook_url": alert.webhook_url if alert else "",
        "webhook_secret_set": bool(alert and alert.webhook_secret),
        "webhook_secret": new_secret,
        "signature_header": SIGNATURE_HEADER,
        "events": [_event(e) for e in alert_events_recent(user=user, limit=EVENTS_SHOWN)],
        "page_url": _page_url(request),
    }


def _no_store(response: HttpResponse, saved: AlertSettingsSaved) -> None:
    if saved.new_secret:
        response["Cache-Control"] = "no-store"


@router.get("/alerts", response={200: AlertsOut, **ERRORS}, operation_id="billing_alerts_get", summary="Your alerts")
def alerts_get(request: HttpRequest):
    """Thresholds, e-mail, the webhook (never its secret) and the latest crossings with their deliveries."""
    return _alerts(request, BalanceAlert.objects.filter(user=_user(request)).first())


@router.put(
    "/alerts", response={200: AlertsOut, **ERRORS}, operation_id="billing_alerts_update", summary="Change your alerts"
)
def alerts_update(request: HttpRequest, response: HttpResponse, body: AlertsIn):
    """Saves the settings (omitted fields unchanged) and checks the balance against them at once.
    The first webhook URL gets a signing secret, in `webhook_secret` of this answer only."""
    user = _user(request)
    current = BalanceAlert.objects.filter(user=user).first()
    saved = balance_alert_update(
        user=user,
        thresholds=(
            [parse_usd_amount(t, field="thresholds") for t in body.thresholds]
            if body.thresholds is not None
            else (list(current.thresholds) if current else [])
        ),
        email_enabled=body.email_enabled
        if body.email_enabled is not None
        else (current.email_enabled if current else True),
        webhook_url=body.webhook_url if body.webhook_url is not None else (current.webhook_url if current else ""),
    )
    balance_alerts_check(user_id=user.id)
    _no_store(response, saved)
    return _alerts(request, BalanceAlert.objects.get(id=saved.alert.id), new_secret=saved.new_secret)


@router.post(
    "/alerts/webhook-secret",
    response={200: AlertsOut, **ERRORS},
    operation_id="billing_alerts_webhook_secret_rotate",
    summary="New webhook signing secret",
)
def alerts_webhook_secret_rotate(request: HttpRequest, response: HttpResponse):
    """A new signing secret, in `webhook_secret` of this answer only; the old one signs nothing more.
    409 when no webhook URL is set."""
    saved = webhook_secret_rotate(user=_user(request))
    _no_store(response, saved)
    return _alerts(request, saved.alert, new_secret=saved.new_secret)


# --- Card auto-reload ----------------------------------------------------------------------------
class AutoReloadAttemptOut(BaseModel):
    id: int
    status: AutoReloadAttempt.Status
    amount: str
    amount_micros: int
    reason: str = Field(description="Why it was started")
    failure_message: str
    topup_id: int
    created_at: datetime
    finished_at: datetime | None


class AutoReloadOut(BaseModel):
    enabled: bool
    threshold: str = Field(description="Reload when available credits fall below this, USD")
    threshold_micros: int
    amount: str = Field(description="What each reload adds, USD")
    amount_micros: int
    minimum_amount: str = Field(description="The smallest reload amount, USD")
    minimum_amount_micros: int
    card_saved: bool
    card_label: str = Field(description='The saved card, e.g. "visa ending 4242"; empty without one')
    card_payments_available: bool = Field(description="Whether this server takes card payments (Stripe configured)")
    card_setup_url: str = Field(
        description="Saving a card needs Stripe.js in a browser: the page with the card form (its auto-reload section)"
    )
    attempts: list[AutoReloadAttemptOut] = Field(description=f"The latest {ATTEMPTS_SHOWN} reloads, newest first")
    attempt: AutoReloadAttemptOut | None = Field(
        None, description="PUT: the reload started at once because the credits were already below the threshold"
    )


class AutoReloadIn(NoNulIn):
    """Omitted fields keep their value. Enabling needs a saved card."""

    enabled: StrictBool | None = None
    threshold: str | None = Field(None, description='USD, e.g. "10"; at most $10,000')
    amount: str | None = Field(None, description='USD in whole cents, e.g. "25.00"; at least $20, at most $10,000')

    @field_validator("threshold", "amount", mode="before")
    @classmethod
    def _strict_amounts(cls, value: object, info: ValidationInfo) -> object:
        return value if value is None else _usd(value, info.field_name or "amount")


def _attempt(attempt: AutoReloadAttempt) -> dict:
    return {
        "id": attempt.id,
        "status": attempt.status,
        "amount": exact_usd(attempt.amount),
        "amount_micros": attempt.amount,
        "reason": attempt.reason,
        "failure_message": attempt.failure_message,
        "topup_id": attempt.topup_id,
        "created_at": attempt.created_at,
        "finished_at": attempt.finished_at,
    }


def _autoreload(request: HttpRequest, *, attempt: AutoReloadAttempt | None = None) -> dict:
    user = _user(request)
    reload = AutoReload.objects.filter(user=user).first() or _RELOAD_DEFAULTS
    attempts = AutoReloadAttempt.objects.filter(user=user).order_by("-id")[:ATTEMPTS_SHOWN]
    return {
        "enabled": reload.enabled,
        "threshold": exact_usd(reload.threshold),
        "threshold_micros": reload.threshold,
        "amount": exact_usd(reload.amount),
        "amount_micros": reload.amount,
        "minimum_amount": exact_usd(minimum_micros()),
        "minimum_amount_micros": minimum_micros(),
        "card_saved": bool(reload.stripe_payment_method_id),
        "card_label": reload.card_label if reload.stripe_payment_method_id else "",
        "card_payments_available": card_payments_configured(),
        "card_setup_url": _page_url(request, "#auto-reload"),
        "attempts": [_attempt(a) for a in attempts],
        "attempt": _attempt(attempt) if attempt is not None else None,
    }


@router.get(
    "/autoreload",
    response={200: AutoReloadOut, **ERRORS},
    operation_id="billing_autoreload_get",
    summary="Your auto-reload",
)
def autoreload_get(request: HttpRequest):
    """Settings, the saved card (if any), where to save one, and the latest reloads."""
    return _autoreload(request)


@router.put(
    "/autoreload",
    response={200: AutoReloadOut, **ERRORS},
    operation_id="billing_autoreload_update",
    summary="Change your auto-reload",
)
def autoreload_put(request: HttpRequest, body: AutoReloadIn):
    """Saves the settings (omitted fields unchanged). Enabled with the credits already below the
    threshold, the card is charged at once: the outcome is `attempt`."""
    user = _user(request)
    current = AutoReload.objects.filter(user=user).first() or _RELOAD_DEFAULTS
    enabled = body.enabled if body.enabled is not None else current.enabled
    autoreload_update(
        user=user,
        enabled=enabled,
        threshold=parse_usd_amount(body.threshold, field="threshold") if body.threshold else current.threshold,
        amount=parse_usd_amount(body.amount, field="amount") if body.amount else current.amount,
    )
    attempt = autoreload_run(user_id=user.id) if enabled else None
    return _autoreload(request, attempt=attempt)


@router.delete(
    "/autoreload/card",
    response={200: AutoReloadOut, **ERRORS},
    operation_id="billing_autoreload_card_remove",
    summary="Remove the saved card",
)
def autoreload_card_delete(request: HttpRequest):
    """Forgets the card; auto-reload turns off. Saving another needs the page (`card_setup_url`)."""
    autoreload_card_remove(user=_user(request))
    return _autoreload(request)
