"""Card auto-reload: top up from a saved card, off-session, before credits run out.

Saving the card: a Stripe Customer and a SetupIntent (usage off_session) created here; the browser
confirms it with Stripe.js and comes back; `autoreload_card_confirm` reads the SetupIntent from
Stripe (never from the browser) and keeps its PaymentMethod.

Reloading: when the available credits are below the user's threshold, or would not cover the next
hour of the running rentals (the settlement would warn and then close them for insufficient
funds), `autoreload_run` records an attempt and a TopUp in one transaction (at most one attempt per
user in flight: a partial unique index), then asks Stripe for an off-session PaymentIntent,
confirmed at once, under the idempotency key "autoreload:<user>:<attempt id>". A call that got no
answer is repeated with the same key, so the card is charged once. A succeeded payment is credited
at once through the top-up crediting path (`topup_credit` under the key the Stripe webhook uses,
"stripe:pi:<intent>:credit"), so the webhook's later `payment_intent.succeeded` credits nothing
more. A refusal is recorded on the attempt and e-mailed, and auto-reload waits
AUTORELOAD_RETRY_AFTER_FAILURE_SECONDS (or a change of its settings) before trying again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from billing.models import AccountKind, AutoReload, AutoReloadAttempt, TopUp
from billing.runway import next_hour_shortfall
from billing.selectors import user_balances
from billing.services import topup_credit
from billing.stripe_service import (
    CREDIT_REFERENCE_TYPE,
    CURRENCY,
    MICROS_PER_CENT,
    NOT_CONFIGURED,
    TOPUP_MAX_MICROS,
    _stripe_client,
    card_payments_configured,
)
from core import clock
from core.errors import ApplicationError
from core.money import format_usd

logger = logging.getLogger(__name__)


def minimum_micros() -> int:
    return int(getattr(settings, "AUTORELOAD_MIN_USD", 20)) * 1_000_000


def retry_after_failure() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "AUTORELOAD_RETRY_AFTER_FAILURE_SECONDS", 6 * 3600)))


# --- Settings ------------------------------------------------------------------------------------
@transaction.atomic
def autoreload_update(*, user: User, enabled: bool, threshold: int, amount: int) -> AutoReload:
    """Save the settings. Enabling needs a saved card; the amount is at least AUTORELOAD_MIN_USD."""
    if amount < minimum_micros():
        raise ApplicationError(f"The reload amount is at least {format_usd(minimum_micros(), 2)}.", {"field": "amount"})
    if amount > TOPUP_MAX_MICROS or amount % MICROS_PER_CENT:
        raise ApplicationError("The reload amount is in whole cents, at most $10,000.", {"field": "amount"})
    if threshold < 0 or threshold > TOPUP_MAX_MICROS:
        raise ApplicationError("The threshold is between $0 and $10,000.", {"field": "threshold"})
    reload, _ = AutoReload.objects.select_for_update().get_or_create(user=user)
    if enabled and not reload.stripe_payment_method_id:
        raise ApplicationError("Save a card first: auto-reload charges it.", {"field": "enabled"})
    reload.enabled, reload.threshold, reload.amount = enabled, threshold, amount
    reload.save()
    return reload


@dataclass(frozen=True)
class CardSetup:
    setup_intent_id: str
    client_secret: str
    publishable_key: str


def autoreload_card_setup(*, user: User) -> CardSetup:
    """A Stripe Customer (once) and a SetupIntent for the browser to confirm with Stripe.js."""
    if not card_payments_configured():
        raise ApplicationError(NOT_CONFIGURED, status=503)
    with transaction.atomic(durable=True):
        reload, _ = AutoReload.objects.get_or_create(user=user)
    client = _stripe_client()
    try:
        if not reload.stripe_customer_id:
            customer = client.v1.customers.create(
                params={"email": user.email, "metadata": {"user_id": str(user.id)}},
                options={"idempotency_key": f"autoreload-customer:{user.id}"},
            )
            AutoReload.objects.filter(id=reload.id, stripe_customer_id="").update(stripe_customer_id=customer.id)
            reload.refresh_from_db()
        intent = client.v1.setup_intents.create(
            params={
                "customer": reload.stripe_customer_id,
                "usage": "off_session",
                "payment_method_types": ["card"],
                "metadata": {"user_id": str(user.id)},
            }
        )
    except stripe.StripeError as exc:
        logger.warning("Stripe refused the card setup of user %s: %s", user.id, exc)
        raise ApplicationError("The card form could not be started; please try again.", status=502) from None
    AutoReload.objects.filter(id=reload.id).update(setup_intent_id=intent.id, updated_at=timezone.now())
    return CardSetup(
        setup_intent_id=intent.id,
        client_secret=intent.client_secret or "",
        publishable_key=settings.STRIPE_PUBLISHABLE_KEY or "",
    )


def autoreload_card_confirm(*, user: User, setup_intent_id: str) -> AutoReload:
    """Keep the card of the user's SetupIntent once Stripe says it succeeded."""
    reload = AutoReload.objects.filter(user=user).first()
    if reload is None or not setup_intent_id or reload.setup_intent_id != setup_intent_id:
        raise ApplicationError("This card setup is not yours or has expired; save the card again.", status=404)
    client = _stripe_client()
    try:
        intent = client.v1.setup_intents.retrieve(setup_intent_id)
        if intent.status != "succeeded" or not intent.payment_method:
            raise ApplicationError(
                "The card was not saved: Stripe has not confirmed it. Try again.", {"status": intent.status}
            )
        method_id = intent.payment_method if isinstance(intent.payment_method, str) else intent.payment_method.id
        method = client.v1.payment_methods.retrieve(method_id)
    except stripe.StripeError as exc:
        logger.warning("Stripe could not confirm the card setup %s: %s", setup_intent_id, exc)
        raise ApplicationError("Stripe could not be asked about the card; try again.", status=502) from None
    card = getattr(method, "card", None)
    label = f"{card.brand} ending {card.last4}" if card else "card"
    with transaction.atomic():
        AutoReload.objects.filter(id=reload.id, setup_intent_id=setup_intent_id).update(
            stripe_payment_method_id=method_id, card_label=label[:60], setup_intent_id="", updated_at=timezone.now()
        )
    reload.refresh_from_db()
    return reload


def autoreload_card_remove(*, user: User) -> None:
    """Forget the card (auto-reload turns off). The PaymentMethod stays with Stripe's customer."""
    AutoReload.objects.filter(user=user).update(
        stripe_payment_method_id="", card_label="", enabled=False, updated_at=timezone.now()
    )


# --- Reloading -----------------------------------------------------------------------------------
def reload_reason(*, reload: AutoReload, now: datetime) -> str | None:
    """Why this user's credits need a reload now, or None."""
    available = user_balances(user=reload.user).available
    if available < reload.threshold:
        return f"Available credits {format_usd(available, 2)} below the threshold {format_usd(reload.threshold, 2)}"
    short = next_hour_shortfall(user=reload.user, now=now)
    if short > 0:
        return f"Available credits {format_usd(short, 2)} short of the running rentals' next hour"
    return None


def _recent_failure(reload: AutoReload, now: datetime) -> bool:
    last = AutoReloadAttempt.objects.filter(user_id=reload.user_id).order_by("-id").first()
    return (
        last is not None
        and last.status == AutoReloadAttempt.Status.FAILED
        and last.finished_at is not None
        and last.finished_at > max(now - retry_after_failure(), reload.updated_at)
    )


def autoreload_run(*, user_id: int, now: datetime | None = None) -> AutoReloadAttempt | None:
    """Reload the user's credits if they need it (see the module doc); the attempt, or None."""
    now = now or clock.now()
    if not card_payments_configured():
        return None
    in_flight = AutoReloadAttempt.objects.filter(user_id=user_id, status=AutoReloadAttempt.Status.PROCESSING).first()
    if in_flight is not None:
        if in_flight.stripe_payment_intent_id:  # Stripe is still processing it: read the outcome
            return _follow(in_flight)
        return _charge(in_flight)  # an earlier call got no answer from Stripe: ask again, same key
    try:
        with transaction.atomic():
            reload = AutoReload.objects.select_for_update().select_related("user").filter(user_id=user_id).first()
            if reload is None or not reload.enabled or not reload.stripe_payment_method_id:
                return None
            if _recent_failure(reload, now):
                return None
            reason = reload_reason(reload=reload, now=now)
            if reason is None:
                return None
            topup = TopUp.objects.create(user=reload.user, amount=reload.amount, currency=CURRENCY)
            attempt = AutoReloadAttempt.objects.create(
                user=reload.user, amount=reload.amount, reason=reason[:200], topup=topup, created_at=now
            )
    except IntegrityError:  # another process started one meanwhile (the one-in-flight index)
        return None
    return _charge(attempt)


def autoreload_check_all(*, now: datetime | None = None) -> int:
    """Every enabled auto-reload (and any attempt left without an answer); returns reloads credited."""
    user_ids = set(
        AutoReload.objects.filter(enabled=True).exclude(stripe_payment_method_id="").values_list("user_id", flat=True)
    )
    user_ids |= set(
        AutoReloadAttempt.objects.filter(status=AutoReloadAttempt.Status.PROCESSING).values_list("user_id", flat=True)
    )
    credited = 0
    for user_id in sorted(user_ids):
        attempt = autoreload_run(user_id=user_id, now=now)
        credited += attempt is not None and attempt.status == AutoReloadAttempt.Status.SUCCEEDED
    return credited


def _charge(attempt: AutoReloadAttempt) -> AutoReloadAttempt:
    """Ask Stripe to charge the attempt (idempotently), then record the outcome."""
    reload = AutoReload.objects.get(user_id=attempt.user_id)
    AutoReloadAttempt.objects.filter(id=attempt.id).update(tries=attempt.tries + 1)
    try:
        intent = _stripe_client().v1.payment_intents.create(
            params={
                "amount": attempt.amount // MICROS_PER_CENT,
                "currency": CURRENCY,
                "customer": reload.stripe_customer_id,
                "payment_method": reload.stripe_payment_method_id,
                "payment_method_types": ["card"],
                "off_session": True,
                "confirm": True,
                "metadata": {
                    "topup_id": str(attempt.topup_id),
                    "user_id": str(attempt.user_id),
                    "autoreload_attempt": str(attempt.id),
                },
            },
            options={"idempotency_key": attempt.idempotency_key},
        )
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        # No answer, or Stripe's own trouble: the outcome is unknown. The attempt stays in flight
        # and the next check asks again under the same key (Stripe answers with the same intent).
        logger.warning("auto-reload %s: no answer from Stripe: %s", attempt.id, exc)
        return AutoReloadAttempt.objects.get(id=attempt.id)
    except stripe.StripeError as exc:
        error = getattr(exc, "error", None)
        intent_id = getattr(getattr(error, "payment_intent", None), "id", None) if error else None
        detail = getattr(exc, "user_message", None) or str(exc) or "the card was refused"
        return _fail(attempt, f"Stripe: {detail}", intent_id)
    if intent.status == "succeeded":
        return _succeed(attempt, intent.id, int(intent.to_dict().get("amount_received") or intent.amount))
    if intent.status == "processing":  # credited by the webhook when it succeeds
        TopUp.objects.filter(id=attempt.topup_id).update(stripe_payment_intent_id=intent.id, updated_at=timezone.now())
        AutoReloadAttempt.objects.filter(id=attempt.id).update(stripe_payment_intent_id=intent.id)
        return AutoReloadAttempt.objects.get(id=attempt.id)
    reason = (
        "The bank asks the card holder to confirm this payment; auto-reload cannot. Top up by hand."
        if intent.status == "requires_action"
        else f"The payment did not go through ({intent.status})."
    )
    return _fail(attempt, reason, intent.id)


def _follow(attempt: AutoReloadAttempt) -> AutoReloadAttempt:
    try:
        intent = _stripe_client().v1.payment_intents.retrieve(attempt.stripe_payment_intent_id)
    except stripe.StripeError as exc:
        logger.warning("auto-reload %s: could not read its PaymentIntent: %s", attempt.id, exc)
        return attempt
    if intent.status == "succeeded":
        return _succeed(attempt, intent.id, int(intent.to_dict().get("amount_received") or intent.amount))
    if intent.status in ("requires_payment_method", "canceled"):
        return _fail(attempt, "The payment did not go through.", intent.id)
    return attempt


def _succeed(attempt: AutoReloadAttempt, intent_id: str, paid_cents: int) -> AutoReloadAttempt:
    with transaction.atomic():
        topup = TopUp.objects.select_for_update().select_related("user").get(id=attempt.topup_id)
        if paid_cents * MICROS_PER_CENT != topup.amount:
            raise ApplicationError(f"Stripe charged {paid_cents} cents for auto-reload {attempt.id}; not credited.")
        credit = topup_credit(
            user=topup.user,
            amount=topup.amount,
            clearing_kind=AccountKind.CLEARING_STRIPE,
            reference_type=CREDIT_REFERENCE_TYPE,
            reference_id=intent_id,
            idempotency_key=f"stripe:pi:{intent_id}:credit",  # the webhook's key: credited once
            memo=f"Card auto-reload #{attempt.id} (top-up #{topup.id})",
        )
        topup.stripe_payment_intent_id = intent_id
        if topup.credit_id is None:
            topup.credit = credit
            topup.status = TopUp.Status.SUCCEEDED
            topup.failure_message = ""
        topup.save(update_fields=["stripe_payment_intent_id", "credit", "status", "failure_message", "updated_at"])
        AutoReloadAttempt.objects.filter(id=attempt.id).update(
            status=AutoReloadAttempt.Status.SUCCEEDED, stripe_payment_intent_id=intent_id, finished_at=clock.now()
        )
    attempt.refresh_from_db()
    _mail(
        attempt,
        f"We added {format_usd(attempt.amount, 2)} to your credits",
        f"Auto-reload charged {format_usd(attempt.amount, 2)} to your saved card. Reason: {attempt.reason}.",
    )
    return attempt


def _fail(attempt: AutoReloadAttempt, message: str, intent_id: str | None) -> AutoReloadAttempt:
    with transaction.atomic():
        TopUp.objects.filter(id=attempt.topup_id, credit__isnull=True).update(
            status=TopUp.Status.FAILED,
            failure_message=message[:300],
            stripe_payment_intent_id=intent_id,
            updated_at=timezone.now(),
        )
        AutoReloadAttempt.objects.filter(id=attempt.id).update(
            status=AutoReloadAttempt.Status.FAILED,
            failure_message=message[:300],
            stripe_payment_intent_id=intent_id or "",
            finished_at=clock.now(),
        )
    attempt.refresh_from_db()
    _mail(
        attempt,
        "Auto-reload failed: your card was not charged",
        f"Auto-reload tried to charge {format_usd(attempt.amount, 2)} to your saved card and failed: {message}\n\n"
        "Running deployments are stopped with the reason 'insufficient funds' when your credits cannot cover "
        "their next hour. Top up by hand or save another card.",
    )
    return attempt


def _mail(attempt: AutoReloadAttempt, subject: str, text: str) -> None:
    user = User.objects.get(id=attempt.user_id)
    send_mail(
        subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{subject}",
        message=f"{text}\n\nBilling: {settings.SITE_URL}/billing/\n",
        from_email=None,
        recipient_list=[user.email],
        fail_silently=True,  # a mail outage must not undo a recorded payment
    )
