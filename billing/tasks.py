from __future__ import annotations

from celery import shared_task

from billing.usage import usage_settle_all


@shared_task(name="billing.tasks.settle_usage", acks_late=True, ignore_result=True)
def settle_usage() -> int:
    """Hourly: settle accrued usage of every open rental (idempotent: re-runs charge nothing twice)."""
    return usage_settle_all().charged
