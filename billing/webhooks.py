"""Inbound webhooks: parse, call one service, answer. The rules live in billing.stripe_service."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from billing.models import StripeEvent
from billing.stripe_service import stripe_event_receive
from core.errors import ApplicationError


@csrf_exempt  # Stripe cannot send a CSRF token; the signature on the raw body authenticates it
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """200 once the verified event is stored, whatever processing made of it (the body says).

    A failed event stays stored for the admin's Replay; a refund that came before its payment
    is applied when the payment's own event arrives. 400: bad signature or payload, or a signed
    event with values Stripe never sends (stored as invalid, never processed again); 503: the
    webhook secret is not configured.
    """
    if request.method != "POST":
        response = JsonResponse({"message": "Method not allowed."}, status=405)
        response["Allow"] = "POST"
        return response
    try:
        event = stripe_event_receive(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    except ApplicationError as exc:
        return JsonResponse({"message": exc.message}, status=exc.status)
    if event.status == StripeEvent.Status.INVALID:
        message = f"Invalid Stripe event: {event.error}"
        extra = {"status": event.status, "event": event.event_id}
        return JsonResponse({"message": message, "extra": extra, **extra}, status=400)
    return JsonResponse({"status": event.status, "event": event.event_id})
