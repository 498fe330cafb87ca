"""E-mails billing sends. Called after commit (never inside a database transaction)."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail

from core.money import format_usd


def send_low_balance_email(user, meter) -> None:
    send_mail(
        subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Your balance will not cover the next hour",
        message=(
            f"Your rental {meter.reference_id} costs {format_usd(meter.price_per_hour)} per hour, and your "
            "available credits cannot cover the next hour.\n\n"
            "Top up within the hour to keep it running; otherwise it is stopped with the reason "
            f"'insufficient funds'.\n\nTop up: {settings.SITE_URL}/billing/\n"
        ),
        from_email=None,
        recipient_list=[user.email],
        fail_silently=True,  # a mail outage must not stop settlement
    )
