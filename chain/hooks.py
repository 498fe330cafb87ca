"""What chain tells the apps above it. Billing registers the crediting of final deposits in its
`AppConfig.ready`, so a watcher (or a pasted hash) credits right after a deposit becomes final
without chain importing billing."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_deposits_final_handlers: list[Callable[[], object]] = []


def register_deposits_final_handler(handler: Callable[[], object]) -> None:
    if handler not in _deposits_final_handlers:
        _deposits_final_handlers.append(handler)


def deposits_final_notify() -> None:
    """Deposits became final. A failing handler is logged, not raised: the deposits stay final and
    beat's credit task takes them next time."""
    for handler in list(_deposits_final_handlers):
        try:
            handler()
        except Exception:
            logger.exception("crediting final deposits failed; beat's credit-deposits will retry")
