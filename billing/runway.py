"""Runway: how long a renter's credits last at the current spend.

The spend rate is the sum of the locked hourly prices of the renter's running hourly rentals
(open usage meters, not paused). A paused meter (its node is silent) accrues nothing, so it counts
as 0. A monthly reservation was charged up front when it started: it spends nothing more and counts
as 0 too (it is listed apart, so the page can say so).

The funds are the available credits plus what is left on the holds of those running hourly
rentals, less the usage they accrued that no settlement has charged yet: the hold is the renter's
money, spent on the same rentals before any more is taken from the available credits. Holds of
deployments still looking for a node are not counted (nothing spends them yet).

runway = funds / spend rate, in whole seconds (rounded down).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from accounts.models import User
from billing.models import Hold, UsageMeter
from billing.selectors import user_balances
from billing.usage import meter_accrued
from core import clock
from core.money import format_usd

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class Runway:
    available: int  # micro-USD available credits
    held: int  # micro-USD left on the running hourly rentals' holds, less unsettled usage (may be < 0)
    spend_per_hour: int  # micro-USD per hour of the running hourly rentals
    running: int  # running hourly rentals (counted in the rate)
    reservations: int  # open monthly reservations (paid up front: 0 further spend)
    paused: int  # hourly rentals paused while their node is silent (0 spend)

    @property
    def funds(self) -> int:
        return self.available + self.held

    @property
    def seconds(self) -> int | None:
        """Seconds the funds last at the spend rate; None when nothing is spending."""
        if self.spend_per_hour <= 0:
            return None
        return max(0, self.funds) * SECONDS_PER_HOUR // self.spend_per_hour

    @property
    def rate_text(self) -> str:
        return f"{format_usd(self.spend_per_hour, places=4)}/h"

    @property
    def text(self) -> str:
        """'about 3 days 4 hours at $1.20/h'; for no spend, says so."""
        if self.seconds is None:
            return "No running rental is spending credits"
        return f"{duration_words(self.seconds)} at {self.rate_text}"


def duration_words(seconds: int) -> str:
    """'about 3 days 4 hours', 'about 5 hours 10 minutes', 'about 12 minutes', 'less than a minute'."""
    if seconds < 60:
        return "less than a minute"
    units = (("day", 86400), ("hour", 3600), ("minute", 60))
    first = next(n for n, (_unit, size) in enumerate(units) if seconds >= size)
    parts = []
    for unit, size in units[first : first + 2]:  # the largest unit and the one below it
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return "about " + " ".join(parts)


def user_runway(*, user: User, now: datetime | None = None) -> Runway:
    """The renter's runway now (two queries: balances, open meters with their holds)."""
    now = now or clock.now()
    balances = user_balances(user=user)
    held = rate = running = reservations = paused = 0
    meters = UsageMeter.objects.filter(renter=user, closed_at__isnull=True).select_related("hold")
    for meter in meters:
        if meter.reservation_total is not None:
            reservations += 1
            continue
        if meter.paused_at is not None:
            paused += 1
            continue
        running += 1
        rate += meter.price_per_hour
        if meter.hold.status == Hold.Status.ACTIVE:
            unsettled = max(0, meter_accrued(meter, now=now) - meter.charged)
            held += meter.hold.remaining - unsettled  # usage beyond the hold comes out of available
    return Runway(
        available=balances.available,
        held=held,
        spend_per_hour=rate,
        running=running,
        reservations=reservations,
        paused=paused,
    )


def next_hour_shortfall(*, user: User, now: datetime | None = None) -> int:
    """micro-USD the available credits lack to keep every running hourly rental's hold covering
    its next hour and its unsettled usage: what the settlement takes from them, and above which a
    rental is warned and then closed for insufficient funds. 0 when they suffice."""
    now = now or clock.now()
    needed = 0
    meters = UsageMeter.objects.filter(
        renter=user, closed_at__isnull=True, paused_at__isnull=True, reservation_total__isnull=True
    ).select_related("hold")
    for meter in meters:
        if meter.hold.status != Hold.Status.ACTIVE:
            continue
        backlog = max(0, meter_accrued(meter, now=now) - meter.charged)
        needed += max(0, meter.price_per_hour + backlog - meter.hold.remaining)
    return max(0, needed - user_balances(user=user).available)
