from __future__ import annotations

from celery import shared_task

from marketplace.selectors import market_board_refresh


@shared_task(name="marketplace.tasks.refresh_market_board", acks_late=True, ignore_result=True)
def refresh_market_board() -> int:
    return market_board_refresh()
