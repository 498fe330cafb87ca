"""The interim lease-failure penalty (until the rewards issue, 22, brings the policy proper): a lease
ended because its node failed slashes the provider SLASH_LEASE_FAILURE_SPON whole $SPON (0: none),
once per lease (reference "lease-failure:<lease id>"), through providers.slashing.

Registered with `register_lease_failure_penalty` in MarketplaceConfig.ready; the handler runs inside
the transaction that ends the lease, so the slash is decided (recorded) with it or not at all; the
transaction itself goes out later (providers.tasks.run_slashes, then the chain sender).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings

from core import clock
from core.errors import ApplicationError
from marketplace.models import Lease
from providers.models import SPON_DECIMALS, Slash
from providers.slashing import slash_decide

logger = logging.getLogger(__name__)


def lease_failure_slash(lease: Lease, last_good: datetime) -> Slash | None:
    """`register_lease_failure_penalty`'s handler: decides the slash of the lease's provider."""
    whole_spon = settings.SLASH_LEASE_FAILURE_SPON
    node = lease.node
    if whole_spon <= 0 or node.is_simulated:  # demo nodes need no stake: nothing to slash
        return None
    silent = max(0, int((clock.now() - last_good).total_seconds()))
    reason = (
        f"Lease {lease.id} on node {node.id} ended by the node's failure: no heartbeat for {silent} s "
        f"(last at {last_good:%Y-%m-%d %H:%M:%S} UTC)."
    )
    try:
        return slash_decide(
            provider=node.provider,
            amount_base_units=whole_spon * 10**SPON_DECIMALS,
            reason=reason,
            reference=f"lease-failure:{lease.id}",
            evidence_type="lease",
            evidence_id=str(lease.id),
        )
    except ApplicationError as exc:  # never undo the failover for a penalty that could not be decided
        logger.error("lease %s: the failure slash was not decided: %s", lease.id, exc.message)
        return None
