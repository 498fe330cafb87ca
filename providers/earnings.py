"""Reads for a provider's earnings: the dashboard's days (/provider/earnings/) and a node's era
rewards with their receipts explained term by term (the node page, the API).

What a day holds (UTC days, the same rule on the page):

- rental income: the ledger, by the day it was credited. All nodes: what usage charges credited
  to the provider's pending earnings (net of the platform fee), less what was given back (a
  refund of usage after a node's last heartbeat, an admin's reversal of a charge). One node: the
  ledger does not say which node a charge was for, so a node's rental is its eras' rental
  earnings (NodeReward.rental_micros), on the day each era ended, like its rewards.
- $SPON rewards and floor top-ups: each era's NodeReward rows, on the UTC day the era ended (the
  day they are computed and credited: the era of 3 Dec, 00:00–24:00 UTC, counts on 4 Dec). $SPON
  in tokens and in USD at the era's own rate (NodeReward.spon_usd_micros).
- slashes: on the day they were decided, in $SPON (the amount the chain took when known, else the
  amount decided); failed slashes and slashes whose appeal was upheld do not count. In USD at the
  current $SPON rate (chain.rates) when there is one, else in $SPON only (then no USD total
  includes them, and the page says so).

Every figure is aggregated in SQL, one query per kind over the whole range (never a query per
day). $SPON base units are summed exactly: in SQL on PostgreSQL (numeric), in Python over the
rows on SQLite (its text-stored base units would sum as floats).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from spheron_sdk import rewards as sdk

from billing.selectors import provider_rental_per_day
from chain import rates
from providers.models import (
    SPON_DECIMALS,
    AppealStatus,
    Node,
    NodeReward,
    ProviderProfile,
    Slash,
    SlashStatus,
)

DAYS_CHOICES = (7, 30, 90)
DEFAULT_DAYS = 30
SPON_UNIT = Decimal(10) ** SPON_DECIMALS


# --- Display helpers --------------------------------------------------------------------------


def spon_text(base_units: int | Decimal, *, places: int | None = None) -> str:
    """Base units as whole $SPON for people: 1234500000000000000000 -> '1,234.5'; exact, or
    truncated to `places` decimals (never more than there is) where a table has no room for 18."""
    value = Decimal(base_units) / SPON_UNIT
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    value = value.normalize()
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd_text(micros: int, *, places: int = 2) -> str:
    """Micro-USD for people, a minus sign before the dollar: -1500000 -> '−$1.50'."""
    value = Decimal(abs(micros)).scaleb(-6)
    shown = max(places, min(6, -value.normalize().as_tuple().exponent if value % 1 else 0))
    return f"{'−' if micros < 0 else ''}${value:,.{shown}f}"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


# --- The days ---------------------------------------------------------------------------------


@dataclass
class EarningsDay:
    day: date
    rental_micros: int = 0
    spon: int = 0  # $SPON base units
    spon_usd_micros: int = 0
    spon_unrated: int = 0  # rewards of eras that had no $SPON rate (their USD value is 0)
    floor_micros: int = 0
    slash_spon: int = 0  # base units slashed (positive)
    slash_usd_micros: int | None = 0  # None: no current rate to value them

    @property
    def total_micros(self) -> int:
        """Rental + rewards in USD + floor top-ups − slashes in USD (when they can be valued)."""
        return self.rental_micros + self.spon_usd_micros + self.floor_micros - (self.slash_usd_micros or 0)


@dataclass
class Earnings:
    days: list[EarningsDay]  # oldest first, one for every day of the range
    first: date
    last: date
    node: Node | None
    slash_rate: Decimal | None  # USD per $SPON the slashes are valued at (now), None without one
    slash_rate_at: datetime | None
    no_rate_reason: str
    totals: EarningsDay = field(init=False)

    def __post_init__(self) -> None:
        totals = EarningsDay(day=self.last)
        for day in self.days:
            totals.rental_micros += day.rental_micros
            totals.spon += day.spon
            totals.spon_usd_micros += day.spon_usd_micros
            totals.spon_unrated += day.spon_unrated
            totals.floor_micros += day.floor_micros
            totals.slash_spon += day.slash_spon
            if totals.slash_usd_micros is not None and day.slash_usd_micros is not None:
                totals.slash_usd_micros += day.slash_usd_micros
            else:
                totals.slash_usd_micros = None
        self.totals = totals

    @property
    def slash_rate_text(self) -> str:
        return sdk.plain(Decimal(self.slash_rate)) if self.slash_rate is not None else ""


def _sum_base_units_by_day(queryset: QuerySet, day_field: str, amount: Any) -> dict[date, int]:
    """{day: Σ base units}: in SQL on PostgreSQL; on SQLite over the rows (exact integers)."""
    rows = queryset.annotate(day=TruncDate(day_field, tzinfo=UTC))
    totals: dict[date, int] = defaultdict(int)
    if connection.vendor == "postgresql":
        for day, total in rows.values("day").annotate(total=Sum(amount)).values_list("day", "total"):
            totals[day] += int(total or 0)
    else:
        for day, value in rows.values_list("day", amount).iterator():
            totals[day] += int(value or 0)
    return totals


def _reward_days(provider: ProviderProfile, node: Node | None, start: datetime, end: datetime) -> dict[date, dict]:
    rewards = NodeReward.objects.filter(provider=provider, era__ended_at__gte=start, era__ended_at__lt=end)
    if node is not None:
        rewards = rewards.filter(node=node)
    micros = (
        rewards.annotate(day=TruncDate("era__ended_at", tzinfo=UTC))
        .values("day")
        .annotate(
            rental=Coalesce(Sum("rental_micros"), 0),
            usd=Coalesce(Sum("spon_usd_micros"), 0),
            floor=Coalesce(Sum("floor_topup_micros"), 0),
            unrated=Count("id", filter=Q(era__spon_usd_rate__isnull=True) & ~Q(spon=0)),
        )
        .values_list("day", "rental", "usd", "floor", "unrated")
    )
    result = {day: {"rental": r, "usd": u, "floor": f, "unrated": n, "spon": 0} for day, r, u, f, n in micros}
    for day, total in _sum_base_units_by_day(rewards, "era__ended_at", "spon").items():
        result.setdefault(day, {"rental": 0, "usd": 0, "floor": 0, "unrated": 0, "spon": 0})["spon"] = total
    return result


def floor_cuts(*, provider: ProviderProfile, days: int, today: date, node: Node | None = None) -> list[dict[str, Any]]:
    """Eras of the window whose subsidy pool could not pay every floor top-up in full, with what
    this provider (or node) wanted and was paid: the dashboard says by how much each was cut."""
    start, end = day_start(today - timedelta(days=days - 1)), day_start(today + timedelta(days=1))
    rewards = NodeReward.objects.filter(
        provider=provider, era__ended_at__gte=start, era__ended_at__lt=end, era__floor_ratio__lt=1,
        floor_wanted_micros__gt=0,
    )  # fmt: skip
    if node is not None:
        rewards = rewards.filter(node=node)
    rows = (
        rewards.values("era__started_at", "era__floor_ratio", "era__floor_budget_micros", "era__floor_wanted_micros")
        .annotate(wanted=Sum("floor_wanted_micros"), paid=Sum("floor_topup_micros"))
        .order_by("-era__started_at")
    )
    return [
        {
            "era": row["era__started_at"].date(),
            "ratio": row["era__floor_ratio"],
            "cut_percent": (1 - row["era__floor_ratio"]) * 100,
            "wanted": usd_text(row["wanted"]),
            "paid": usd_text(row["paid"]),
            "pool": usd_text(row["era__floor_budget_micros"]),
            "pool_wanted": usd_text(row["era__floor_wanted_micros"]),
        }
        for row in rows
    ]


def counted_slashes(provider: ProviderProfile) -> QuerySet[Slash]:
    """The provider's slashes that took (or will take) stake: not failed, no upheld appeal."""
    return (
        Slash.objects.filter(provider=provider)
        .exclude(status=SlashStatus.FAILED)
        .exclude(appeal__status=AppealStatus.UPHELD)
    )


def _slash_days(provider: ProviderProfile, node: Node | None, start: datetime, end: datetime) -> dict[date, int]:
    slashes = counted_slashes(provider).filter(created_at__gte=start, created_at__lt=end)
    if node is not None:
        slashes = slashes.filter(node=node)
    return _sum_base_units_by_day(slashes, "created_at", Coalesce("amount_slashed", "amount"))


def earnings_days(*, provider: ProviderProfile, days: int, today: date, node: Node | None = None) -> Earnings:
    """The provider's earnings per UTC day over the `days` days ending `today` (see the module's
    docstring for what each figure is and which day it counts on); `node`: that node only."""
    first = today - timedelta(days=days - 1)
    start, end = day_start(first), day_start(today + timedelta(days=1))
    if node is None:
        rental = provider_rental_per_day(user=provider.user, start=start, end=end)
    else:
        rental = {}
    rewards = _reward_days(provider, node, start, end)
    slashes = _slash_days(provider, node, start, end)
    quote = rates.quote_or_reason("SPON")
    rate = quote.quote.usd_per_unit if quote.quote else None
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        reward = rewards.get(day, {})
        slash = slashes.get(day, 0)
        result.append(
            EarningsDay(
                day=day,
                rental_micros=rental.get(day, 0) + (reward.get("rental", 0) if node is not None else 0),
                spon=reward.get("spon", 0),
                spon_usd_micros=reward.get("usd", 0),
                spon_unrated=reward.get("unrated", 0),
                floor_micros=reward.get("floor", 0),
                slash_spon=slash,
                slash_usd_micros=(
                    None if rate is None else rates.usd_micros_for(slash, decimals=SPON_DECIMALS, usd_per_unit=rate)
                ),
            )
        )
    return Earnings(
        days=result,
        first=first,
        last=today,
        node=node,
        slash_rate=rate,
        slash_rate_at=quote.quote.at if quote.quote else None,
        no_rate_reason=quote.reason,
    )


# --- The chart --------------------------------------------------------------------------------

SERIES = (
    ("rental", "Rental income"),
    ("rewards", "$SPON rewards (USD)"),
    ("floor", "Floor top-ups"),
    ("slashes", "Slashes"),
)


def _nice_step(value: int) -> int:
    """The axis step in micro-USD: the smallest 1, 2, 2.5 or 5 × 10^n micro-USD whose four steps
    reach `value` (round amounts on the labels)."""
    if value <= 0:
        return 250_000
    need = Fraction(value, 4)
    magnitude = 1
    while magnitude * 10 <= need:
        magnitude *= 10
    for step in (Fraction(1), Fraction(2), Fraction(5, 2), Fraction(5), Fraction(10)):
        amount = step * magnitude
        if amount >= need and amount.denominator == 1:
            return int(amount)
    return 10 * magnitude  # pragma: no cover


def earnings_chart(earnings: Earnings, *, width: int = 1000, height: int = 280) -> dict[str, Any]:
    """Geometry of the stacked bars (server-rendered SVG, viewBox units): per day, rental, rewards
    in USD and floor top-ups stacked up from zero, slashes (when valued in USD) down from zero."""
    right_margin, top, bottom = 12, 12, 40
    ups = [d.rental_micros + d.spon_usd_micros + d.floor_micros for d in earnings.days]
    downs = [d.slash_usd_micros or 0 for d in earnings.days]
    # A negative rental day (a give-back larger than that day's charges) draws below zero too.
    ups_peak = max([max(u, 0) for u in ups], default=0)
    downs_peak = max([dn + max(-d.rental_micros, 0) for dn, d in zip(downs, earnings.days, strict=True)], default=0)
    step = _nice_step(ups_peak + downs_peak)
    steps_up = max(1, -(-ups_peak // step))
    steps_down = -(-downs_peak // step)
    ticks_values = [step * n for n in range(-steps_down, steps_up + 1)]
    labels = [usd_text(v) if v else "$0" for v in ticks_values]
    left = max(64, 30 + 7 * max(len(label) for label in labels))
    plot_width, plot_height = width - left - right_margin, height - top - bottom
    span = step * (steps_up + steps_down)
    zero_y = top + plot_height * steps_up * step / span

    def y_of(micros: int) -> float:
        return round(zero_y - plot_height * micros / span, 1)

    slot = plot_width / max(len(earnings.days), 1)
    bars = []
    for index, day in enumerate(earnings.days):
        x = round(left + index * slot + slot * 0.15, 1)
        segments = []
        up, down = 0, 0
        parts = (
            ("rental", day.rental_micros),
            ("rewards", day.spon_usd_micros),
            ("floor", day.floor_micros),
            ("slashes", -(day.slash_usd_micros or 0)),
        )
        for kind, amount in parts:
            if amount > 0:
                y0, y1 = y_of(up + amount), y_of(up)
                up += amount
            elif amount < 0:
                y0, y1 = y_of(down), y_of(down + amount)
                down += amount
            else:
                continue
            segments.append(
                {
                    "kind": kind,
                    "amount": amount,
                    "y": y0,
                    "height": max(round(y1 - y0, 1), 0.5),
                    "text": usd_text(amount),
                }
            )
        bars.append(
            {
                "day": day.day,
                "x": x,
                "width": round(slot * 0.7, 1),
                "segments": segments,
                "total": day.total_micros,
                "label_x": round(x + slot * 0.35, 1),
                "labelled": index % max(1, len(earnings.days) // 6) == 0 or index == len(earnings.days) - 1,
            }
        )
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right_margin,
        "zero_y": round(zero_y, 1),
        "day_label_y": top + plot_height + 16,
        "bars": bars,
        "ticks": [{"label": label, "y": y_of(v)} for v, label in zip(ticks_values, labels, strict=True)],
        "days": len(earnings.days),
    }


# --- A node's rewards and receipts ------------------------------------------------------------


def node_rewards(*, node: Node) -> QuerySet[NodeReward]:
    """The node's era rewards, newest era first."""
    return NodeReward.objects.filter(node=node).select_related("era").order_by("-era__started_at")


def node_reward_for_era(*, node: Node, era_id: int) -> NodeReward | None:
    return NodeReward.objects.filter(node=node, era_id=era_id).select_related("era").first()


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)).astimezone(UTC)
    except ValueError:
        return None


def _spans(items: Any) -> list[dict[str, Any]]:
    spans = []
    for item in items or []:
        start, end = (_moment(item[0]), _moment(item[1])) if isinstance(item, list) and len(item) == 2 else (None, None)
        seconds = (end - start).total_seconds() if start and end else None
        spans.append({"start": start, "end": end, "seconds": seconds, "raw": item})
    return spans


def duration_text(seconds: Decimal | float | None) -> str:
    """3725 -> '1 h 2 min 5 s' (exact seconds kept elsewhere)."""
    if seconds is None:
        return "—"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{secs} s" if secs else ""]
    return " ".join(p for p in parts if p) or "0 s"


def _d(value: Any) -> str:
    return sdk.plain(value) if isinstance(value, Decimal) else str(value)


def receipt_explained(reward: NodeReward) -> dict[str, Any]:
    """The receipt's terms for a person, each with the inputs behind it, and the figure recomputed
    from the receipt alone by spheron_sdk.rewards.reward_recompute (what a provider runs), compared
    with the points and $SPON the node was given."""
    receipt = reward.receipt if isinstance(reward.receipt, dict) else {}
    try:
        terms = sdk.reward_recompute(receipt)
        error = ""
    except sdk.ReceiptError as exc:
        terms, error = {}, str(exc)
    problems = [] if error else sdk.receipt_check(receipt)
    base = receipt.get("base", {})
    uptime = receipt.get("uptime", {})
    liveness = receipt.get("liveness", {})
    trust = receipt.get("trust", {})
    utilization = receipt.get("utilization", {})
    forfeit = receipt.get("forfeit", {})
    era = receipt.get("era", {})
    lines = [
        {**line, "points": _d(terms.get(f"base.units.{i}.points", line.get("points", "")))}
        for i, line in enumerate(base.get("units", []))
        if isinstance(line, dict)
    ]
    challenges = [
        {
            **challenge,
            "at_time": _moment(challenge.get("at")),
            "weighted": _d(terms.get(f"liveness.challenges.{i}.weighted", challenge.get("weighted", ""))),
        }
        for i, challenge in enumerate(liveness.get("challenges", []))
        if isinstance(challenge, dict)
    ]
    leases = [
        {**lease, "start_time": _moment(lease.get("start")), "end_time": _moment(lease.get("end"))}
        for lease in utilization.get("leases", [])
        if isinstance(lease, dict)
    ]
    window = _spans([uptime.get("window")])[0] if uptime.get("window") else None
    recomputed_points = terms.get("points")
    recomputed_spon = terms.get("spon.amount")
    points_match = recomputed_points is not None and recomputed_points == Decimal(reward.points)
    spon_match = recomputed_spon is not None and recomputed_spon == int(reward.spon)
    return {
        "error": error,
        "problems": problems,
        "formula": receipt.get("formula", sdk.FORMULA),
        "version": receipt.get("version"),
        "base": {"lines": lines, "points": _d(terms.get("base.points", ""))},
        "uptime": {
            "window": window,
            "outages": _spans(uptime.get("outages")),
            "excused": _spans(uptime.get("excused")),
            "threshold": uptime.get("threshold", ""),
            "counted_seconds": terms.get("uptime.counted_seconds"),
            "down_seconds": terms.get("uptime.down_seconds"),
            "online_seconds": terms.get("uptime.online_seconds"),
            "counted": _d(terms.get("uptime.counted_seconds", "")),
            "down": _d(terms.get("uptime.down_seconds", "")),
            "online": _d(terms.get("uptime.online_seconds", "")),
            "uptime": _d(terms.get("uptime.uptime", "")),
            "factor": _d(terms.get("uptime.factor", "")),
        },
        "liveness": {
            "weights": liveness.get("weights", {}),
            "passed": liveness.get("passed", 0),
            "challenges": challenges,
            "count": terms.get("liveness.count", ""),
            "weighted_shortfall": _d(terms.get("liveness.weighted_shortfall", "")),
            "factor": _d(terms.get("liveness.factor", "")),
        },
        "resources": sdk.RESOURCES,
        "trust": {"tier": trust.get("tier", ""), "multiplier": trust.get("multiplier", "")},
        "utilization": {
            "leases": leases,
            "capacity_units": utilization.get("capacity_units", ""),
            "bonus": utilization.get("bonus", ""),
            "leased": _d(terms.get("utilization.leased_unit_seconds", "")),
            "online_units": _d(terms.get("utilization.online_unit_seconds", "")),
            "utilization": _d(terms.get("utilization.utilization", "")),
            "factor": _d(terms.get("utilization.factor", "")),
        },
        "forfeit": {
            "forfeited": bool(forfeit.get("forfeited")),
            "reason": forfeit.get("reason", ""),
            "factor": _d(terms.get("forfeit.factor", "")),
        },
        "points": {
            "stated": receipt.get("points", ""),
            "recomputed": _d(recomputed_points) if recomputed_points is not None else "",
            "paid": sdk.plain(Decimal(reward.points)),
            "match": points_match,
        },
        "spon": {
            "emission": era.get("emission", ""),
            "emission_text": spon_text(int(era["emission"])) if str(era.get("emission", "")).isdigit() else "",
            "total_points": era.get("total_points", ""),
            "cutoff": era.get("remainder_cutoff"),
            "floor": terms.get("spon.floor", ""),
            "remainder": terms.get("spon.remainder", ""),
            "remainder_unit": terms.get("spon.remainder_unit", ""),
            "recomputed": recomputed_spon if recomputed_spon is not None else "",
            "recomputed_text": spon_text(recomputed_spon) if recomputed_spon is not None else "",
            "paid": int(reward.spon),
            "paid_text": spon_text(reward.spon),
            "match": spon_match,
        },
        "matches": points_match and spon_match and not problems,
    }


def reward_summary(reward: NodeReward) -> dict[str, Any]:
    """One era's row: the figures a person reads before opening the receipt."""
    return {
        "reward": reward,
        "era": reward.era,
        "spon_text": spon_text(reward.spon, places=6),
        "usd_text": usd_text(reward.spon_usd_micros, places=2),
        "rate": reward.era.spon_usd_rate,
        "rate_text": sdk.plain(Decimal(reward.era.spon_usd_rate)) if reward.era.spon_usd_rate is not None else "",
        "points_text": sdk.plain(Decimal(reward.points)),
    }


def spon_tokens(base_units: int | Decimal) -> str:
    """Exact whole $SPON as a plain decimal string (the API's)."""
    value = Decimal(base_units).scaleb(-SPON_DECIMALS)
    return sdk.plain(value.quantize(Decimal(1).scaleb(-SPON_DECIMALS), rounding=ROUND_DOWN))


def rewards_card(*, provider: ProviderProfile) -> dict[str, Any] | None:
    """The dashboard's $SPON rewards card: all eras' $SPON and the last era's (with its USD at the
    era's rate), or None before the provider's first rewarded era. Two small queries."""
    last = (
        NodeReward.objects.filter(provider=provider)
        .values("era_id", "era__started_at")
        .order_by("-era__started_at")
        .first()
    )
    if last is None:
        return None
    totals = _sum_base_units_by_day(NodeReward.objects.filter(provider=provider), "era__ended_at", "spon")
    last_rows = NodeReward.objects.filter(provider=provider, era_id=last["era_id"])
    last_spon = sum(_sum_base_units_by_day(last_rows, "era__ended_at", "spon").values())
    last_usd = last_rows.aggregate(total=Coalesce(Sum("spon_usd_micros"), 0))["total"]
    return {
        "total": spon_text(sum(totals.values()), places=6),
        "last_era": last["era__started_at"].date(),
        "last_spon": spon_text(last_spon, places=6),
        "last_usd": usd_text(last_usd),
    }
