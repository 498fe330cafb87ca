from __future__ import annotations

from celery import shared_task

from billing.alerts import alert_deliveries_due, alert_delivery_attempt, balance_alerts_check_all
from billing.autoreload import autoreload_check_all
from billing.deposits import deposits_credit_final
from billing.earnings import earnings_settle_due
from billing.payouts import payouts_run
from billing.usage import usage_settle_all


@shared_task(name="billing.tasks.settle_usage", acks_late=True, ignore_result=True)
def settle_usage() -> int:
    """Hourly: settle accrued usage of every open rental (idempotent: re-runs charge nothing twice).

    Auto-reloads run first, so a card top-up lands before a hold that cannot be extended would
    close its rental; then the balances the settlement lowered are checked for auto-reload
    thresholds and low-balance alerts."""
    autoreload_check_all()
    charged = usage_settle_all().charged
    autoreload_check_all()
    balance_alerts_check_all()
    return charged


@shared_task(name="billing.tasks.check_balances", acks_late=True, ignore_result=True)
def check_balances() -> int:
    """Between settlements (new holds, refunds): auto-reload thresholds, then low-balance alerts."""
    autoreload_check_all()
    return balance_alerts_check_all()


@shared_task(name="billing.tasks.deliver_balance_alert", acks_late=True, ignore_result=True)
def deliver_balance_alert(delivery_id: int) -> str:
    """One attempt at a low-balance alert (e-mail or webhook); a failure schedules the next."""
    return alert_delivery_attempt(delivery_id=delivery_id).status


@shared_task(name="billing.tasks.deliver_balance_alerts", acks_late=True, ignore_result=True)
def deliver_balance_alerts() -> int:
    """The sweep: alert deliveries due whose queued attempt was lost."""
    return alert_deliveries_due()


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
