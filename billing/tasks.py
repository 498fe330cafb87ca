from __future__ import annotations

from celery import shared_task

from billing.deposits import deposits_credit_final
from billing.earnings import earnings_settle_due
from billing.payouts import payouts_run
from billing.usage import usage_settle_all


@shared_task(name="billing.tasks.settle_usage", acks_late=True, ignore_result=True)
def settle_usage() -> int:
    """Hourly: settle accrued usage of every open rental (idempotent: re-runs charge nothing twice)."""
    return usage_settle_all().charged


@shared_task(name="billing.tasks.settle_earnings", acks_late=True, ignore_result=True)
def settle_earnings() -> int:
    """Hourly: move provider earnings older than the holding window from pending to settled."""

    return earnings_settle_due().settled


@shared_task(name="billing.tasks.credit_deposits", acks_late=True, ignore_result=True)
def credit_deposits() -> int:
    """Credit final crypto deposits; the watchers do it at once, this is the backstop."""
    return deposits_credit_final()


@shared_task(name="billing.tasks.run_payouts", acks_late=True, ignore_result=True)
def run_payouts() -> int:
    """Payouts on chain: settle the ones the sender settled, record the approved ones (idempotent)."""
    outcome = payouts_run()
    return outcome["recorded"].recorded + outcome["reconciled"].paid
