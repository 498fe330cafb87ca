"""/billing/alerts/: low-balance alerts (thresholds, e-mail, signed webhook) with their delivery log,
and card auto-reload (settings, the saved card, attempts). Thin: billing.alerts and
billing.autoreload do the work."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing.alerts import SIGNATURE_HEADER, balance_alert_update, balance_alerts_check
from billing.autoreload import (
    autoreload_card_confirm,
    autoreload_card_remove,
    autoreload_card_setup,
    autoreload_run,
    autoreload_update,
    minimum_micros,
)
from billing.forms import AutoReloadForm, BalanceAlertForm
from billing.models import AutoReload, AutoReloadAttempt, BalanceAlert, BalanceAlertDelivery
from billing.runway import user_runway
from billing.stripe_service import card_payments_configured
from core.errors import ApplicationError
from core.money import exact_usd

DELIVERY_LOG_SIZE = 50


def _usd_text(micros: int) -> str:
    return exact_usd(micros).rstrip("0").rstrip(".") if micros % 10_000 == 0 else exact_usd(micros)


def _page(
    request: HttpRequest,
    *,
    alert_form: BalanceAlertForm | None = None,
    reload_form: AutoReloadForm | None = None,
    new_secret: str | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    alert = BalanceAlert.objects.filter(user=user).first()
    reload = AutoReload.objects.filter(user=user).first()
    if alert_form is None:
        alert_form = BalanceAlertForm(
            initial={
                "thresholds": ", ".join(_usd_text(t) for t in alert.thresholds) if alert else "",
                "email_enabled": alert.email_enabled if alert else True,
                "webhook_url": alert.webhook_url if alert else "",
            }
        )
    if reload_form is None:
        reload_form = AutoReloadForm(
            initial={
                "enabled": reload.enabled if reload else False,
                "threshold": _usd_text(reload.threshold) if reload else "10",
                "amount": _usd_text(reload.amount) if reload else "20",
            }
        )
    deliveries = (
        BalanceAlertDelivery.objects.filter(event__user=user)
        .select_related("event")
        .order_by("-event__created_at", "-id")[:DELIVERY_LOG_SIZE]
    )
    context = {
        "runway": user_runway(user=user),  # type: ignore[arg-type]
        "alert": alert,
        "alert_form": alert_form,
        "reload": reload,
        "reload_form": reload_form,
        "reload_minimum": minimum_micros(),
        "attempts": AutoReloadAttempt.objects.filter(user=user).order_by("-id")[:20],
        "deliveries": deliveries,
        "new_secret": new_secret,
        "signature_header": SIGNATURE_HEADER,
        "card_payments": card_payments_configured(),
    }
    response = render(request, "billing/alerts.html", context, status=status)
    if new_secret:
        response["Cache-Control"] = "no-store"
    return response


@login_required
def alerts(request: HttpRequest) -> HttpResponse:
    """GET: the page. POST: save the alert settings; a new signing secret is shown on this answer
    only (not redirected, not stored in the session), and the balance is checked at once."""
    if request.method != "POST":
        return _page(request)
    form = BalanceAlertForm(request.POST)
    if form.is_valid():
        try:
            saved = balance_alert_update(
                user=request.user,  # type: ignore[arg-type]
                thresholds=form.cleaned_data["thresholds"],
                email_enabled=form.cleaned_data["email_enabled"],
                webhook_url=form.cleaned_data["webhook_url"] or "",
                new_secret=form.cleaned_data["new_secret"],
            )
        except ApplicationError as exc:
            field = exc.extra.get("field")
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            balance_alerts_check(user_id=request.user.id)
            if saved.new_secret:
                messages.success(request, "Alerts saved. Copy the signing secret now: it is not shown again.")
                return _page(request, new_secret=saved.new_secret)
            messages.success(request, "Alerts saved.")
            return redirect("billing_alerts")
    return _page(request, alert_form=form, status=400)


@login_required
@require_POST
def autoreload_settings(request: HttpRequest) -> HttpResponse:
    form = AutoReloadForm(request.POST)
    if form.is_valid():
        try:
            autoreload_update(
                user=request.user,  # type: ignore[arg-type]
                enabled=form.cleaned_data["enabled"],
                threshold=form.cleaned_data["threshold"],
                amount=form.cleaned_data["amount"],
            )
        except ApplicationError as exc:
            field = exc.extra.get("field")
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            attempt = autoreload_run(user_id=request.user.id) if form.cleaned_data["enabled"] else None
            if attempt is not None and attempt.status == AutoReloadAttempt.Status.SUCCEEDED:
                messages.success(request, "Auto-reload saved; your credits were below the threshold and were reloaded.")
            elif attempt is not None and attempt.status == AutoReloadAttempt.Status.FAILED:
                messages.error(request, f"Auto-reload saved, but the reload failed: {attempt.failure_message}")
            else:
                messages.success(request, "Auto-reload saved.")
            return redirect(reverse("billing_alerts") + "#auto-reload")
    return _page(request, reload_form=form, status=400)


@login_required
@require_POST
def autoreload_card(request: HttpRequest) -> HttpResponse:
    """Start saving a card: a SetupIntent that Stripe.js confirms on the page this returns."""
    try:
        setup = autoreload_card_setup(user=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(reverse("billing_alerts") + "#auto-reload")
    response = render(
        request,
        "billing/card_setup.html",
        {
            "client_secret": setup.client_secret,
            "publishable_key": setup.publishable_key,
            "return_url": request.build_absolute_uri(reverse("billing_autoreload_card_done")),
            "stripe_js_url": settings.STRIPE_JS_URL,
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@login_required
def autoreload_card_done(request: HttpRequest) -> HttpResponse:
    """Where Stripe sends the browser back: the SetupIntent is read from Stripe, not trusted from here."""
    setup_intent_id = request.GET.get("setup_intent", "")[:100]
    try:
        reload = autoreload_card_confirm(user=request.user, setup_intent_id=setup_intent_id)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Card saved: {reload.card_label}. Turn auto-reload on below.")
    return redirect(reverse("billing_alerts") + "#auto-reload")


@login_required
@require_POST
def autoreload_card_delete(request: HttpRequest) -> HttpResponse:
    autoreload_card_remove(user=request.user)  # type: ignore[arg-type]
    messages.success(request, "Card removed; auto-reload is off.")
    return redirect(reverse("billing_alerts") + "#auto-reload")
