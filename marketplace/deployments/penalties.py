"""The slashing policy for downtime during a lease (issue 22, part 4): a lease its node's failure
ended slashes the provider the value of the downtime, once per lease (reference
"lease-downtime:<lease id>"), through providers.slashing, when SLASH_LEASE_DOWNTIME is on.

The value: the lease's locked price (`price_per_hour_micros`) for the seconds from the node's last
good heartbeat (or the lease's start, if later) to the lease's end by failover, in micro-USD rounded
down as the meter rounds (price × seconds // 3600), then in $SPON base units at the SPON rate
(`chain.rates.quote("SPON")`), rounded down: never more than the downtime was worth. The renter is
not charged for that time: the meter closes at the last heartbeat (services.node_leases_fail).

No fresh SPON rate (none, or older than CHAIN_RATE_MAX_AGE_SECONDS): nothing is decided and the
failover goes on; the error log names the lease, the interval and the USD value, so an admin can
decide the slash by hand (Slash admin, with the rate of the day). A stale rate is not used: it
could take far more (or far less) than the downtime was worth. Demo (simulated) nodes are skipped:
they need no stake. A free lease, or no downtime, slashes nothing.

Registered with `register_lease_failure_penalty` in MarketplaceConfig.ready; the handler runs inside
the transaction that ends the lease, so the slash is decided (recorded) with it or not at all; the
transaction itself goes out later (providers.tasks.run_slashes, then the chain sender).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from django.conf import settings

from chain.rates import quote
from core import clock
from core.errors import ApplicationError
from core.money import format_usd
from marketplace.models import Lease
from providers.models import SPON_DECIMALS, Slash
from providers.slashing import slash_decide

logger = logging.getLogger(__name__)

SECONDS_PER_HOUR = 3600
SPON_SYMBOL = "SPON"


def downtime_usd_micros(*, price_per_hour_micros: int, seconds: int) -> int:
    """What `seconds` of a lease at that hourly price are worth, rounded down as its meter rounds."""
    return max(0, int(price_per_hour_micros) * max(0, int(seconds)) // SECONDS_PER_HOUR)


def spon_base_units_for(usd_micros: int, *, usd_per_spon: Decimal) -> int:
    """$SPON base units worth `usd_micros` at `usd_per_spon`, rounded down."""
    if usd_micros <= 0 or usd_per_spon <= 0:
        return 0
    value = Decimal(usd_micros) * (Decimal(10) ** SPON_DECIMALS) / (Decimal(usd_per_spon) * Decimal(1_000_000))
    return int(value.to_integral_value(rounding=ROUND_DOWN))


def lease_downtime_slash(lease: Lease, last_good: datetime) -> Slash | None:
    """`register_lease_failure_penalty`'s handler: decides the downtime slash of the lease's provider."""
    node = lease.node
    if not settings.SLASH_LEASE_DOWNTIME or node.is_simulated:  # demo nodes need no stake: nothing to slash
        return None
    start = max(last_good, lease.started_at)
    end = lease.ended_at or clock.now()
    seconds = max(0, int((end - start).total_seconds()))
    usd = downtime_usd_micros(price_per_hour_micros=lease.price_per_hour_micros, seconds=seconds)
    interval = f"{start:%Y-%m-%d %H:%M:%S}–{end:%Y-%m-%d %H:%M:%S} UTC"
    if usd <= 0:
        return None
    rate = quote(SPON_SYMBOL)
    if rate is None:
        logger.error(
            "lease %s: no downtime slash decided: no fresh SPON rate (downtime %s, %s s, worth %s)",
            lease.id,
            interval,
            seconds,
            format_usd(usd, places=6),
        )
        return None
    amount = spon_base_units_for(usd, usd_per_spon=rate.usd_per_unit)
    if amount <= 0:
        return None
    reason = (
        f"Lease {lease.id} on node {node.id}: down {seconds} s ({interval}) before failover, "
        f"worth {format_usd(usd, places=6)} at {format_usd(lease.price_per_hour_micros, places=6)}/h; "
        f"$SPON at ${rate.usd_per_unit.normalize():f}."
    )
    try:
        return slash_decide(
            provider=node.provider,
            amount_base_units=amount,
            reason=reason,
            reference=f"lease-downtime:{lease.id}",
            evidence_type="lease",
            evidence_id=str(lease.id),
            node=node,
        )
    except ApplicationError as exc:  # never undo the failover for a penalty that could not be decided
        logger.error("lease %s: the downtime slash was not decided: %s", lease.id, exc.message)
        return None
