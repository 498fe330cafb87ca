"""Card top-ups through Stripe: create the PaymentIntent, then credit only from verified webhooks.

Money moves in two steps that never share a database transaction with a network call:
`topup_create` writes a TopUp row, then asks Stripe for a PaymentIntent (idempotency key from the
row id); Stripe later tells us, by a signed webhook, what happened. Each webhook event is stored
raw under its Stripe id first, then processed once, in one transaction with its ledger writes.

Ledger idempotency keys derive from the payment, not from the event, so two different events
about the same payment (Stripe may send `payment_intent.succeeded` twice under different ids)
cannot move money twice. Refunds are applied from the charge's cumulative `amount_refunded`,
so repeated, partial or reordered refund events reverse exactly what is new.

A refund or lost dispute that arrives before the payment was credited is stored as failed
("waiting") and applied automatically, in the same transaction, when the credit is posted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import User
from billing.models import AccountKind, LedgerEntry, LedgerTransaction, StripeEvent, TopUp, TransactionKind
from billing.services import topup_credit, topup_reverse
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

MICROS_PER_CENT = 10_000
TOPUP_MIN_MICROS = 5_000_000  # $5
TOPUP_MAX_MICROS = 10_000_000_000  # $10,000
WEBHOOK_TOLERANCE_SECONDS = 300
CURRENCY = "usd"
# Seconds to wait for Stripe before giving up; the idempotency key makes a retry safe.
STRIPE_TIMEOUT_SECONDS = 20
NOT_CONFIGURED = "Card payments are not configured on this server."

# How a top-up's credit is referenced in the ledger. Not ("topup", id): billing.services uses
# that pair for the reversals of a top-up's *ledger transaction*, and the two ids would collide.
CREDIT_REFERENCE_TYPE = "stripe_payment_intent"

# Stripe's largest amount is $999,999.99; anything above, or below zero, is not from Stripe.
STRIPE_MAX_AMOUNT_CENTS = 99_999_999
# Unix times Stripe could send: from its founding to well past this service's lifetime.
EARLIEST_CREATED, LATEST_CREATED = 1_262_304_000, 4_102_444_800  # 2010-01-01, 2100-01-01

_FINAL = {StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED, StripeEvent.Status.INVALID}
_REVERSAL_TYPES = ("charge.refunded", "charge.dispute.closed")
WAITING_PREFIX = "Waiting for the payment to be credited"


@dataclass(frozen=True)
class TopUpIntent:
    """What the browser needs to pay: Stripe.js confirms `client_secret` with `publishable_key`."""

    topup: TopUp
    client_secret: str
    publishable_key: str
    payment_intent_id: str


class _WaitingForCredit(Exception):
    """A reversal event for a payment whose success event has not been processed yet."""


# --- Configuration -------------------------------------------------------------------------------
def card_payments_configured() -> bool:
    """All three are needed: without the webhook secret a card could be charged but never credited."""
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_PUBLISHABLE_KEY and settings.STRIPE_WEBHOOK_SECRET)


def _stripe_client() -> stripe.StripeClient:
    api_base = (settings.STRIPE_API_BASE or "").rstrip("/")
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=STRIPE_TIMEOUT_SECONDS),
    )


# --- Money in: creating a top-up -----------------------------------------------------------------
def topup_amount_validate(amount_micros: int) -> None:
    if not isinstance(amount_micros, int) or isinstance(amount_micros, bool):
        raise ApplicationError("The amount must be a whole number of micro-USD.", {"field": "amount"})
    if amount_micros < TOPUP_MIN_MICROS or amount_micros > TOPUP_MAX_MICROS:
        raise ApplicationError(
            f"A top-up must be between ${TOPUP_MIN_MICROS // 1_000_000:,} and ${TOPUP_MAX_MICROS // 1_000_000:,}.",
            {"field": "amount", "min": TOPUP_MIN_MICROS, "max": TOPUP_MAX_MICROS},
        )
    if amount_micros % MICROS_PER_CENT:
        raise ApplicationError("Card top-ups are in whole cents.", {"field": "amount"})


def topup_create(*, user: User, amount_micros: int) -> TopUpIntent:
    """Start a card top-up: a TopUp row, then a Stripe PaymentIntent for it (no credit yet)."""
    if not card_payments_configured():
        raise ApplicationError(NOT_CONFIGURED, status=503)
    topup_amount_validate(amount_micros)

    # durable=True: refuses to run inside an outer transaction, so the Stripe call below is
    # never made while this connection holds a transaction open.
    with transaction.atomic(durable=True):
        topup = TopUp.objects.create(user=user, amount=amount_micros, currency=CURRENCY)

    try:
        intent = _stripe_client().v1.payment_intents.create(
            params={
                "amount": amount_micros // MICROS_PER_CENT,
                "currency": CURRENCY,
                "payment_method_types": ["card"],
                "metadata": {"topup_id": str(topup.id), "user_id": str(user.id)},
            },
            options={"idempotency_key": f"topup:{topup.id}"},
        )
    except stripe.StripeError as exc:
        logger.warning("Stripe refused PaymentIntent for top-up %s: %s", topup.id, exc)
        if isinstance(exc, stripe.APIConnectionError):
            detail = "the card processor could not be reached"
        else:
            detail = getattr(exc, "user_message", None) or "the card processor refused the request"
        TopUp.objects.filter(id=topup.id).update(
            status=TopUp.Status.FAILED, failure_message=f"Stripe: {detail}"[:300], updated_at=timezone.now()
        )
        raise ApplicationError(
            f"The payment could not be started ({detail}). No money was taken; please try again.",
            {"topup": topup.id, "stripe_error": getattr(exc, "code", None) or type(exc).__name__},
            status=502,
        )

    TopUp.objects.filter(id=topup.id).update(stripe_payment_intent_id=intent.id, updated_at=timezone.now())
    topup.refresh_from_db()
    return TopUpIntent(
        topup=topup,
        client_secret=intent.client_secret or "",
        publishable_key=settings.STRIPE_PUBLISHABLE_KEY or "",
        payment_intent_id=intent.id,
    )


# --- Webhook events ------------------------------------------------------------------------------
def stripe_event_receive(*, payload: bytes, signature: str) -> StripeEvent:
    """Verify, store raw (once per event id), then process a webhook delivery.

    A forged, tampered or stale delivery raises ApplicationError (400) and stores nothing. A
    duplicate of an event already processed or ignored is returned unchanged. A duplicate of
    an event that failed is processed again: processing is idempotent, so this is a retry.
    """
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise ApplicationError("Stripe webhooks are not configured on this server.", status=503)
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError:
        raise ApplicationError("Invalid Stripe signature.", status=400)
    except Exception:  # correctly signed but not a JSON event object
        raise ApplicationError("Invalid Stripe event payload.", status=400)

    try:  # stored exactly as Stripe sent it, so it must be JSON a database can hold
        raw = json.loads(payload, parse_constant=_not_json)
        json.dumps(raw, ensure_ascii=False).encode()  # a lone surrogate cannot be stored
    except (ValueError, UnicodeError, RecursionError):
        raise ApplicationError("Invalid Stripe event payload.", status=400) from None
    if not isinstance(raw, dict) or b"\\u0000" in payload:  # PostgreSQL's jsonb holds no NUL
        raise ApplicationError("Invalid Stripe event payload.", status=400)
    event_id, event_type = raw.get("id"), raw.get("type")
    if not (
        isinstance(event_id, str)
        and 0 < len(event_id) <= 100
        and isinstance(event_type, str)
        and 0 < len(event_type) <= 100
    ):
        raise ApplicationError("A Stripe event needs an id and a type.", status=400)
    created = raw.get("created")
    timestamp = isinstance(created, int) and not isinstance(created, bool)
    valid_created = created is None or (timestamp and EARLIEST_CREATED <= created <= LATEST_CREATED)
    stripe_created = datetime.fromtimestamp(created, tz=UTC) if created is not None and valid_created else None

    try:
        stored, is_new = StripeEvent.objects.get_or_create(
            event_id=event_id,
            defaults={"type": event_type[:100], "payload": raw, "stripe_created": stripe_created},
        )
    except IntegrityError:  # the same event delivered twice at once
        stored, is_new = StripeEvent.objects.get(event_id=event_id), False
    if not is_new and stored.status in _FINAL:
        return stored
    if not valid_created:
        return _mark_invalid(stored.id, f"The event's created is not a Unix time: {str(created)[:40]!r}.")
    return stripe_event_process(event=stored)


def stripe_event_process(*, event: StripeEvent) -> StripeEvent:
    """Process a stored event once; the outcome is recorded on the row (never raised)."""
    try:
        with transaction.atomic():
            return _process_locked(event_id=event.id)
    except _WaitingForCredit as exc:
        return _mark_failed(event.id, f"{WAITING_PREFIX}: {exc}")
    except _InvalidEvent as exc:
        logger.warning("Stripe event %s is invalid: %s", event.event_id, exc.message)
        return _mark_invalid(event.id, exc.message)
    except ApplicationError as exc:
        logger.warning("Stripe event %s failed: %s", event.event_id, exc.message)
        return _mark_failed(event.id, exc.message)
    except Exception as exc:  # recorded for the admin's Replay; the delivery itself was accepted
        logger.exception("Stripe event %s failed", event.event_id)
        return _mark_failed(event.id, f"{type(exc).__name__}: {exc}")


def stripe_event_replay(*, event: StripeEvent) -> StripeEvent:
    """Process a failed (or never processed) event again: the admin's Replay."""
    if event.status in _FINAL:
        raise ApplicationError(
            f"Event {event.event_id} was already {event.status}; only failed events can be replayed.",
            {"event": event.event_id},
            status=409,
        )
    return stripe_event_process(event=event)


def _process_locked(*, event_id: int) -> StripeEvent:
    event = StripeEvent.objects.select_for_update().get(id=event_id)
    if event.status in _FINAL:  # processed by a concurrent delivery while we waited for the lock
        return event
    handler = _HANDLERS.get(event.type)
    if handler is None:
        status, note = StripeEvent.Status.IGNORED, "Event type not handled."
    else:
        data = event.payload.get("data") if isinstance(event.payload, dict) else None
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            raise _InvalidEvent("The event has no data.object.")
        status, note = handler(obj, event)
    event.status = status
    event.error = note
    event.attempts += 1
    event.processed_at = timezone.now()
    event.save(update_fields=["status", "error", "attempts", "processed_at"])
    return event


def _mark_failed(event_id: int, error: str) -> StripeEvent:
    StripeEvent.objects.filter(id=event_id).exclude(status__in=_FINAL).update(
        status=StripeEvent.Status.FAILED, error=error[:2000], attempts=F("attempts") + 1
    )
    return StripeEvent.objects.get(id=event_id)


def _mark_invalid(event_id: int, error: str) -> StripeEvent:
    """Values Stripe never sends: kept for the record, answered 400, and never processed again
    (a redelivery gets the same answer without touching the ledger)."""
    StripeEvent.objects.filter(id=event_id).exclude(status__in=_FINAL).update(
        status=StripeEvent.Status.INVALID,
        error=error[:2000],
        attempts=F("attempts") + 1,
        processed_at=timezone.now(),
    )
    return StripeEvent.objects.get(id=event_id)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class _InvalidEvent(ApplicationError):
    """A signed event with a value Stripe never sends (a negative or huge amount, an unknown
    currency, a wrong type, a missing field)."""


# --- Handlers: (data.object, event) -> (status, note); raise to fail ------------------------------
def _cents(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= STRIPE_MAX_AMOUNT_CENTS:
        raise _InvalidEvent(f"The event's {field} is not an amount in cents Stripe sends: {str(value)[:40]!r}.")
    return value * MICROS_PER_CENT


def _id_of(value: Any) -> str | None:
    """A Stripe reference is an id, or the object itself when expanded."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _topup_for_intent(intent_id: str | None, metadata: Any = None) -> TopUp | None:
    """The top-up paid by this PaymentIntent, locked, so events about one payment run one at a time."""
    if not intent_id:
        return None
    topup = (
        TopUp.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(stripe_payment_intent_id=intent_id)
        .first()
    )
    if topup is not None:
        return topup
    # The intent id is stored just after Stripe returns it; if that write was lost, the
    # metadata we sent still names the top-up.
    topup_id = metadata.get("topup_id") if isinstance(metadata, dict) else None
    if not (isinstance(topup_id, str) and topup_id.isascii() and topup_id.isdigit() and len(topup_id) <= 18):
        return None
    topup = TopUp.objects.select_for_update(of=("self",)).select_related("user").filter(id=int(topup_id)).first()
    if topup is None:
        return None
    if topup.stripe_payment_intent_id not in (None, intent_id):
        raise ApplicationError(f"Top-up {topup.id} belongs to another PaymentIntent.")
    topup.stripe_payment_intent_id = intent_id
    topup.save(update_fields=["stripe_payment_intent_id", "updated_at"])
    return topup


def _check_currency(obj: dict) -> None:
    currency = obj.get("currency")
    if not isinstance(currency, str) or currency.lower() != CURRENCY:
        raise _InvalidEvent(f"Unexpected currency {str(currency)[:20]!r}; top-ups are in USD.")


def _payment_succeeded(intent: dict, event: StripeEvent) -> tuple[str, str]:
    intent_id = _id_of(intent)
    metadata = intent.get("metadata")
    topup = _topup_for_intent(intent_id, metadata)
    if topup is None:
        return StripeEvent.Status.IGNORED, "Not a Spheron top-up."
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if user_id is not None and str(user_id) != str(topup.user_id):
        raise ApplicationError(f"The PaymentIntent's user does not match top-up {topup.id}.")
    _check_currency(intent)
    received = intent.get("amount_received")
    paid = _cents(received if received is not None else intent.get("amount"), "amount")
    if paid != topup.amount:
        raise ApplicationError(f"Paid {paid} micro-USD but top-up {topup.id} is for {topup.amount}; not credited.")

    credit = topup_credit(
        user=topup.user,
        amount=topup.amount,
        clearing_kind=AccountKind.CLEARING_STRIPE,
        reference_type=CREDIT_REFERENCE_TYPE,
        reference_id=intent_id,
        idempotency_key=f"stripe:pi:{intent_id}:credit",
        memo=f"Card top-up #{topup.id} ({event.event_id})",
    )
    if topup.credit_id is None:
        topup.credit = credit
        topup.status = TopUp.Status.SUCCEEDED
        topup.failure_message = ""
        topup.save(update_fields=["credit", "status", "failure_message", "updated_at"])
    _apply_waiting_reversals(intent_id)
    return StripeEvent.Status.PROCESSED, ""


def _apply_waiting_reversals(intent_id: str) -> None:
    """Refunds and disputes that arrived before the credit: apply them now, each in a savepoint."""
    # skip_locked: an event another delivery is processing right now will see the credit itself.
    waiting = (
        StripeEvent.objects.select_for_update(skip_locked=True)
        .filter(
            status=StripeEvent.Status.FAILED,
            type__in=_REVERSAL_TYPES,
            payload__data__object__payment_intent=intent_id,
        )
        .order_by("id")
    )
    for event in list(waiting):
        stripe_event_process(event=event)


def _payment_failed(intent: dict, event: StripeEvent) -> tuple[str, str]:
    topup = _topup_for_intent(_id_of(intent), intent.get("metadata"))
    if topup is None:
        return StripeEvent.Status.IGNORED, "Not a Spheron top-up."
    if topup.credit_id is not None:  # a stale failure (an earlier try) after the payment succeeded
        return StripeEvent.Status.PROCESSED, "The top-up was already paid; failure of an earlier attempt."
    error = intent.get("last_payment_error")
    message = error.get("message") if isinstance(error, dict) else None
    topup.status = TopUp.Status.FAILED
    topup.failure_message = str(message or "The payment failed.")[:300]
    topup.save(update_fields=["status", "failure_message", "updated_at"])
    return StripeEvent.Status.PROCESSED, ""


def _reversed_so_far(credit: LedgerTransaction, kind: str | None = None) -> int:
    """micro-USD already taken back from this credit (by refunds, disputes, or either)."""
    entries = LedgerEntry.objects.filter(
        transaction__reference_type="topup",
        transaction__reference_id=str(credit.id),
        account__kind=AccountKind.CLEARING_STRIPE,
    )
    if kind is not None:
        entries = entries.filter(transaction__kind=kind)
    return entries.aggregate(total=Sum("amount"))["total"] or 0


def _credited_topup(obj: dict, what: str) -> tuple[TopUp | None, str | None]:
    intent_id = _id_of(obj.get("payment_intent"))
    topup = _topup_for_intent(intent_id)
    if topup is not None and topup.credit_id is None:
        raise _WaitingForCredit(f"{what} for {intent_id} is applied when payment_intent.succeeded is processed.")
    return topup, intent_id


def _charge_refunded(charge: dict, event: StripeEvent) -> tuple[str, str]:
    topup, intent_id = _credited_topup(charge, "The refund")
    if topup is None:
        return StripeEvent.Status.IGNORED, "Not a Spheron top-up."
    _check_currency(charge)
    refunded_cents = charge.get("amount_refunded")
    refunded_total = _cents(refunded_cents, "amount_refunded")
    credit = topup.credit
    new = refunded_total - _reversed_so_far(credit, TransactionKind.REFUND)
    reversible = topup.amount - _reversed_so_far(credit)
    amount = min(new, reversible)
    note = ""
    if amount > 0:
        topup_reverse(
            topup=credit,
            amount=amount,
            kind=TransactionKind.REFUND,
            idempotency_key=f"stripe:pi:{intent_id}:refunded:{refunded_cents}",
            memo=f"Card refund of top-up #{topup.id} ({event.event_id})",
        )
    else:
        note = "Nothing new to reverse (already applied)."
    if charge.get("refunded") is True and topup.status == TopUp.Status.SUCCEEDED:
        topup.status = TopUp.Status.REFUNDED
        topup.save(update_fields=["status", "updated_at"])
    return StripeEvent.Status.PROCESSED, note


def _dispute_closed(dispute: dict, event: StripeEvent) -> tuple[str, str]:
    if dispute.get("status") != "lost":
        return StripeEvent.Status.PROCESSED, f"Dispute closed as {dispute.get('status')!r}: nothing to reverse."
    topup, intent_id = _credited_topup(dispute, "The lost dispute")
    if topup is None:
        return StripeEvent.Status.IGNORED, "Not a Spheron top-up."
    dispute_id = _id_of(dispute)
    if dispute_id is None:
        raise ApplicationError("The dispute has no id.")
    _check_currency(dispute)
    amount = min(_cents(dispute.get("amount"), "amount"), topup.amount - _reversed_so_far(topup.credit))
    note = ""
    if amount > 0:
        topup_reverse(
            topup=topup.credit,
            amount=amount,
            kind=TransactionKind.DISPUTE,
            idempotency_key=f"stripe:dispute:{dispute_id}:lost",
            memo=f"Lost card dispute {dispute_id} on top-up #{topup.id} ({event.event_id})",
        )
    else:
        note = "Nothing left to reverse."
    topup.status = TopUp.Status.DISPUTED
    topup.save(update_fields=["status", "updated_at"])
    return StripeEvent.Status.PROCESSED, note


_HANDLERS = {
    "payment_intent.succeeded": _payment_succeeded,
    "payment_intent.payment_failed": _payment_failed,
    "charge.refunded": _charge_refunded,
    "charge.dispute.closed": _dispute_closed,
}
