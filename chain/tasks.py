from __future__ import annotations

import logging

from celery import shared_task

from chain.evm.client import ChainUnavailable
from chain.sender import transactions_run
from chain.services import chain_watch

logger = logging.getLogger(__name__)


@shared_task(name="chain.tasks.watch_chain", acks_late=True, ignore_result=True)
def watch_chain(chain_key: str) -> int:
    """Beat, per chain: read new deposits, decide those at finality (billing credits them).
    An unreachable RPC is logged and left to the next run, seconds away."""
    try:
        result = chain_watch(chain_key=chain_key)
    except ChainUnavailable as exc:
        logger.warning("chain %s: %s", chain_key, exc)
        return 0
    return result.stored if result else 0


@shared_task(name="chain.tasks.send_transactions", acks_late=True, ignore_result=True)
def send_transactions() -> dict[str, str]:
    """Beat: per chain with open transactions, reconcile the sent ones and send the recorded ones
    (chain.sender). Errors of one chain are logged there and left to the next run."""
    return transactions_run()
