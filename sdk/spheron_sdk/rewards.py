"""Recompute a node's era reward from its receipt alone: the Fizz formula, term by term.

The server builds every receipt with this very module (`receipt_build`, then `receipts_allocate`),
so the figure a provider is paid and the receipt that explains it cannot disagree; anyone holding
a receipt can run `receipt_check(receipt)` (or do the arithmetic below by hand). Pure standard
library: no Django, no network.

The formula (protocol-facts.md, "Fizz node", with the trust tier and utilization terms of issue 22):

    points = base × uptime factor × liveness factor × trust multiplier × utilization factor
             × forfeit factor, truncated to 6 decimals

- base = Σ over unit lines of count × tier multiplier × k (k: 500 per GPU, 25 per CPU core).
- uptime: over the node's window (the era, from its registration if later), maintenance is
  excused (removed from the window and from the downtime); counted = window − excused;
  down = outages ∪, less excused; online = counted − down; uptime = online / counted truncated to
  6 decimals (0 when the whole window is excused: a node in maintenance all era earns nothing).
  uptime factor = 1 if uptime ≥ threshold (50%) else 0. The threshold lies on the 6-decimal grid,
  so comparing the truncated uptime is the same as comparing the exact one.
- liveness: each challenge of the era has a shortfall per resource in [0, 1] (cpu, ram, storage,
  gpu); its weighted shortfall is Σ shortfall_r × weight_r (weights sum to 1). The era's weighted
  shortfall is the MEAN over all the era's challenges (passed ones count as 0; the receipt lists
  the others and the number passed), truncated to 6 decimals; no challenge: 0. liveness factor =
  1 − weighted shortfall, never below 0.
- trust multiplier: of the tier the node held during the era (tier 7: 0).
- utilization: the node's online set is its window less outages and excused time; leased
  unit-seconds = Σ over leases of units × seconds of the lease inside the online set; utilization
  = leased unit-seconds / (online seconds × capacity units), at most 1, truncated to 6 decimals
  (0 with no online time). utilization factor = 1 + bonus × utilization.
- forfeit factor: 0 when the era's rewards are forfeited (the reason is stated), else 1.

Every decimal in a receipt is a string, compared by value ("0.5" equals "0.500000"); times are
ISO 8601 with a UTC offset; seconds are exact to the microsecond. Every product is exact; the
only roundings are the truncations named above (always towards zero, to 6 decimals).

$SPON (18 decimals, base units): with the era's emission E (base units) and total points T (the
sum of every node's points), a node with points P gets floor(E × P / T) (P and T in millionths of
a point, so the division is of integers), and the R = E − Σ floors base units left over (fewer
than the number of nodes) go one each to the nodes with the largest remainders (E × P mod T),
ties to the lower node id. So Σ amounts == E exactly whenever T > 0 (T = 0: nobody gets anything,
the emission is not issued). A receipt states its remainder and the era's cutoff (the remainder
and node id of the last node that got a unit): a node got a unit iff (−remainder, node id) ≤
(−cutoff remainder, cutoff node id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Context, Decimal, DecimalException, Inexact, InvalidOperation
from functools import lru_cache, reduce
from typing import Any, TypeVar

VERSION = 1
RESOURCES = ("cpu", "ram", "storage", "gpu")
UNIT_KINDS = ("gpu", "cpu")
PLACES = 6
QUANTUM = Decimal(1).scaleb(-PLACES)  # 0.000001: ratios and points are truncated to this
SCALE = 10**PLACES  # millionths of a point
SPON_DECIMALS = 18
FORMULA = (
    "points = base.points × uptime.factor × liveness.factor × trust.multiplier × utilization.factor"
    " × forfeit.factor, truncated to 6 decimals; spon.amount = floor(era.emission × points /"
    " era.total_points) + spon.remainder_unit"
)

_MICROS = 10**6  # microseconds per second
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE, _ZERO = Decimal(1), Decimal(0)
# Products of a few short decimals: exact, or an error (Inexact trapped), never silently rounded.
_EXACT = Context(prec=120, traps=[Inexact, InvalidOperation])
_WIDE = Context(prec=120, traps=[InvalidOperation])  # for the truncations, which are inexact by design
_MAX_DECIMAL_CHARS = 40

Interval = tuple[int, int]  # microseconds since the epoch, [start, end)
T = TypeVar("T")  # any ordered value: the interval helpers serve providers.uptime's datetimes too


class ReceiptError(ValueError):
    """A receipt whose inputs cannot be computed with: the message says which field and why."""


# --- Parsing -----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)  # receipts repeat the same few decimals (weights, k, multipliers, shortfalls)
def _parse_decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _dec(value: Any, where: str, *more: str, low: Decimal | None = _ZERO, high: Decimal | None = None) -> Decimal:
    """A decimal input; `where` (and `more`, joined with dots) names it in an error."""
    if type(value) is str and len(value) <= _MAX_DECIMAL_CHARS:
        number = _parse_decimal(value)
    elif isinstance(value, Decimal):
        number = value if value.is_finite() else None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        number = None
    if number is None:
        raise ReceiptError(f"{'.'.join((where, *more))}: {value!r} is not a finite decimal (a string of ≤ 40 chars)")
    if low is not None and number < low:
        raise ReceiptError(f"{'.'.join((where, *more))}: {value} is below {low}")
    if high is not None and number > high:
        raise ReceiptError(f"{'.'.join((where, *more))}: {value} is above {high}")
    return number


def _int(value: Any, where: str, *, low: int = 0) -> int:
    """A non-negative integer: a JSON number, or a decimal string (base units pass 2**53)."""
    if isinstance(value, bool):
        raise ReceiptError(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        value = int(value)
    if not isinstance(value, int):
        raise ReceiptError(f"{where}: expected an integer, got {value!r}")
    if value < low:
        raise ReceiptError(f"{where}: {value} is below {low}")
    return value


def _micros(value: Any, where: str) -> int:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and len(value) <= 40:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ReceiptError(f"{where}: {value!r} is not an ISO 8601 time") from None
    else:
        raise ReceiptError(f"{where}: expected an ISO 8601 time, got {value!r}")
    if moment.tzinfo is None:
        raise ReceiptError(f"{where}: {value!r} has no UTC offset")
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _MICROS + delta.microseconds


def _span(value: Any, where: str) -> Interval:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ReceiptError(f"{where}: expected [start, end]")
    start, end = _micros(value[0], f"{where}[0]"), _micros(value[1], f"{where}[1]")
    if end < start:
        raise ReceiptError(f"{where}: ends before it starts")
    return start, end


def _spans(value: Any, where: str) -> list[Interval]:
    if not isinstance(value, list | tuple):
        raise ReceiptError(f"{where}: expected a list of [start, end]")
    return [_span(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _section(receipt: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = receipt.get(name)
    if not isinstance(value, Mapping):
        raise ReceiptError(f"{name}: missing")
    return value


def iso(moment: datetime) -> str:
    """A time as receipts write it: ISO 8601 in UTC with a Z."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


def seconds(micros: int) -> Decimal:
    """Microseconds as exact decimal seconds."""
    return Decimal(micros).scaleb(-6)


# --- Intervals (microseconds) ------------------------------------------------------------------


def intervals_merge(intervals: Iterable[tuple[T, T]]) -> list[tuple[T, T]]:
    """Sorted, overlapping or touching intervals joined, empty ones dropped (any ordered values:
    microseconds here, datetimes in providers.uptime, which uses these)."""
    result: list[tuple[T, T]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if result and start <= result[-1][1]:
            if end > result[-1][1]:
                result[-1] = (result[-1][0], end)
        else:
            result.append((start, end))
    return result


def _clip(intervals: list[Interval], low: int, high: int) -> list[Interval]:
    return [(max(s, low), min(e, high)) for s, e in intervals if min(e, high) > max(s, low)]


def intervals_subtract(intervals: list[tuple[T, T]], holes: list[tuple[T, T]]) -> list[tuple[T, T]]:
    """Merged `intervals` minus merged `holes`."""
    result: list[tuple[T, T]] = []
    for start, end in intervals:
        cursor = start
        for hole_start, hole_end in holes:
            if hole_end <= cursor or hole_start >= end:
                continue
            if hole_start > cursor:
                result.append((cursor, hole_start))
            cursor = max(cursor, hole_end)
        if cursor < end:
            result.append((cursor, end))
    return result


def _length(intervals: list[Interval]) -> int:
    return sum(e - s for s, e in intervals)


def _overlap(start: int, end: int, merged: list[Interval]) -> int:
    return sum(min(e, end) - max(s, start) for s, e in merged if min(e, end) > max(s, start))


def _ratio_down(numerator: int, denominator: int) -> Decimal:
    """numerator / denominator truncated to 6 decimals, in exact integer arithmetic."""
    return Decimal(numerator * SCALE // denominator).scaleb(-PLACES)


def _truncate(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM, rounding=ROUND_DOWN, context=_WIDE)


def _micro_points(value: Decimal, where: str) -> int:
    numerator, denominator = value.as_integer_ratio()
    scaled, rest = divmod(numerator * SCALE, denominator)
    if rest:
        raise ReceiptError(f"{where}: {value} has more than {PLACES} decimals")
    return scaled


# --- The terms ---------------------------------------------------------------------------------


def _base_terms(receipt: Mapping[str, Any], terms: dict[str, Any]) -> tuple[Decimal, bool]:
    lines = _section(receipt, "base").get("units")
    if not isinstance(lines, list) or not lines:
        raise ReceiptError("base.units: expected a list of unit lines")
    base = _ZERO
    has_gpu = False
    for i, line in enumerate(lines):
        where = f"base.units.{i}"
        if not isinstance(line, Mapping) or line.get("kind") not in UNIT_KINDS:
            raise ReceiptError(f"{where}.kind: expected one of {', '.join(UNIT_KINDS)}")
        has_gpu = has_gpu or line["kind"] == "gpu"
        count = _int(line.get("count"), f"{where}.count")
        multiplier = _dec(line.get("multiplier"), where, "multiplier")
        k = _dec(line.get("k"), where, "k")
        points = _EXACT.multiply(_EXACT.multiply(Decimal(count), multiplier), k)
        base = _EXACT.add(base, points)
        terms[f"{where}.points"] = points
    terms["base.points"] = base
    return base, has_gpu


def _uptime_terms(receipt: Mapping[str, Any], terms: dict[str, Any]) -> list[Interval]:
    """Fills the uptime terms; returns the online set (merged) for utilization."""
    section = _section(receipt, "uptime")
    window = _span(section.get("window"), "uptime.window")
    low, high = window
    outages = _clip(intervals_merge(_spans(section.get("outages", []), "uptime.outages")), low, high)
    excused = _clip(intervals_merge(_spans(section.get("excused", []), "uptime.excused")), low, high)
    threshold = _dec(section.get("threshold"), "uptime.threshold", high=_ONE)
    if threshold != _truncate(threshold):
        raise ReceiptError(f"uptime.threshold: {threshold} has more than {PLACES} decimals")
    counted = (high - low) - _length(excused)
    down = _length(intervals_subtract(outages, excused))
    online = counted - down
    uptime = _ratio_down(online, counted) if counted > 0 else _ZERO
    terms["uptime.counted_seconds"] = seconds(counted)
    terms["uptime.down_seconds"] = seconds(down)
    terms["uptime.online_seconds"] = seconds(online)
    terms["uptime.uptime"] = uptime
    terms["uptime.factor"] = _ONE if counted > 0 and uptime >= threshold else _ZERO
    return intervals_subtract([(low, high)] if high > low else [], intervals_merge(outages + excused))


def _liveness_terms(receipt: Mapping[str, Any], terms: dict[str, Any], has_gpu: bool) -> None:
    section = _section(receipt, "liveness")
    raw_weights = section.get("weights")
    if not isinstance(raw_weights, Mapping) or set(raw_weights) - set(RESOURCES):
        raise ReceiptError(f"liveness.weights: expected weights of {', '.join(RESOURCES)}")
    weights = {name: _dec(raw_weights.get(name, "0"), "liveness.weights", name, high=_ONE) for name in RESOURCES}
    weight_sum = reduce(_EXACT.add, weights.values())
    if weight_sum != _ONE:
        raise ReceiptError(f"liveness.weights: they sum to {weight_sum}, not 1")
    if not has_gpu and weights["gpu"] != _ZERO:
        raise ReceiptError("liveness.weights.gpu: a node without a GPU has no GPU weight")
    challenges = section.get("challenges", [])
    if not isinstance(challenges, list):
        raise ReceiptError("liveness.challenges: expected a list")
    passed = _int(section.get("passed", 0), "liveness.passed")
    total = _ZERO
    for i, challenge in enumerate(challenges):
        where = f"liveness.challenges.{i}"
        shortfall = challenge.get("shortfall") if isinstance(challenge, Mapping) else None
        if not isinstance(shortfall, Mapping) or set(shortfall) - set(RESOURCES):
            raise ReceiptError(f"{where}.shortfall: expected shortfalls of {', '.join(RESOURCES)}")
        weighted = _ZERO
        for name in RESOURCES:
            value = _dec(shortfall.get(name, "0"), where, "shortfall", name, high=_ONE)
            weighted = _EXACT.add(weighted, _EXACT.multiply(value, weights[name]))
        total = _EXACT.add(total, weighted)
        terms[f"{where}.weighted"] = weighted
    count = passed + len(challenges)
    weighted_shortfall = _ZERO
    if count:
        numerator, denominator = total.as_integer_ratio()
        weighted_shortfall = _ratio_down(numerator, denominator * count)
    terms["liveness.count"] = count
    terms["liveness.weighted_shortfall"] = weighted_shortfall
    terms["liveness.factor"] = max(_ZERO, _ONE - weighted_shortfall)


def _utilization_terms(receipt: Mapping[str, Any], terms: dict[str, Any], online_set: list[Interval]) -> None:
    section = _section(receipt, "utilization")
    capacity = _int(section.get("capacity_units"), "utilization.capacity_units", low=1)
    bonus = _dec(section.get("bonus"), "utilization.bonus")
    leases = section.get("leases", [])
    if not isinstance(leases, list):
        raise ReceiptError("utilization.leases: expected a list")
    leased = 0
    for i, lease in enumerate(leases):
        where = f"utilization.leases.{i}"
        if not isinstance(lease, Mapping):
            raise ReceiptError(f"{where}: expected a lease")
        start, end = _span([lease.get("start"), lease.get("end")], where)
        leased += _int(lease.get("units"), f"{where}.units", low=1) * _overlap(start, end, online_set)
    online_unit = _length(online_set) * capacity
    utilization = min(_ONE, _ratio_down(leased, online_unit)) if online_unit > 0 else _ZERO
    terms["utilization.leased_unit_seconds"] = seconds(leased)
    terms["utilization.online_unit_seconds"] = seconds(online_unit)
    terms["utilization.utilization"] = utilization
    terms["utilization.factor"] = _EXACT.add(_ONE, _EXACT.multiply(bonus, utilization))


def _spon_terms(receipt: Mapping[str, Any], terms: dict[str, Any], points: Decimal) -> None:
    era = _section(receipt, "era")
    emission = _int(era.get("emission"), "era.emission")
    total = _micro_points(_dec(era.get("total_points"), "era.total_points"), "era.total_points")
    mine = _micro_points(points, "points")
    if mine > total:
        raise ReceiptError(f"points: {points} exceed the era's total points {era.get('total_points')}")
    floor, remainder = divmod(emission * mine, total) if total else (0, 0)
    unit = 0
    cutoff = era.get("remainder_cutoff")
    if cutoff is not None:
        if not isinstance(cutoff, Mapping):
            raise ReceiptError("era.remainder_cutoff: expected {remainder, node_id} or null")
        cut_remainder = _int(cutoff.get("remainder"), "era.remainder_cutoff.remainder")
        try:
            gets_unit = (-remainder, receipt.get("node_id")) <= (-cut_remainder, cutoff.get("node_id"))
        except TypeError:
            raise ReceiptError("era.remainder_cutoff.node_id: not comparable with node_id") from None
        unit = 1 if remainder > 0 and gets_unit else 0
    terms["spon.floor"] = floor
    terms["spon.remainder"] = remainder
    terms["spon.remainder_unit"] = unit
    terms["spon.amount"] = floor + unit


def reward_recompute(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """Every computed term of a receipt from its inputs alone: {"base.points": Decimal, …,
    "points": Decimal, "spon.amount": int} (paths into the receipt; list items by index; the
    spon terms only when the receipt has its era's allocation). Raises ReceiptError for inputs
    that cannot be computed with (a shortfall above 1, weights not summing to 1, …)."""
    if not isinstance(receipt, Mapping):
        raise ReceiptError("a receipt is a JSON object")
    if receipt.get("version") != VERSION:
        raise ReceiptError(f"version: {receipt.get('version')!r}, this SDK reads version {VERSION}")
    terms: dict[str, Any] = {}
    base, has_gpu = _base_terms(receipt, terms)
    online_set = _uptime_terms(receipt, terms)
    _liveness_terms(receipt, terms, has_gpu)
    trust = _section(receipt, "trust")
    tier = _int(trust.get("tier"), "trust.tier", low=1)
    if tier > 7:
        raise ReceiptError(f"trust.tier: {tier} is not a tier 1–7")
    multiplier = _dec(trust.get("multiplier"), "trust.multiplier")
    _utilization_terms(receipt, terms, online_set)
    forfeit = _section(receipt, "forfeit")
    if not isinstance(forfeit.get("forfeited"), bool):
        raise ReceiptError("forfeit.forfeited: expected true or false")
    terms["forfeit.factor"] = _ZERO if forfeit["forfeited"] else _ONE
    product = reduce(
        _EXACT.multiply,
        (
            terms["uptime.factor"],
            terms["liveness.factor"],
            multiplier,
            terms["utilization.factor"],
            terms["forfeit.factor"],
        ),
        base,
    )
    points = _truncate(product)
    terms["points"] = points
    if receipt.get("era", {}).get("emission") is not None:
        _spon_terms(receipt, terms, points)
    return terms


def reward_points(receipt: Mapping[str, Any]) -> Decimal:
    """The node's points for the era, from the receipt's inputs."""
    return reward_recompute(receipt)["points"]


# --- Writing and checking receipts -------------------------------------------------------------


@lru_cache(maxsize=1024)
def _path_parts(path: str) -> tuple[str | int, ...]:
    """ "liveness.challenges.0.weighted" → ("liveness", "challenges", 0, "weighted")."""
    return tuple(int(part) if part.isdigit() else part for part in path.split("."))


def _walk(document: Any, path: str) -> tuple[Any, str | int]:
    *parts, last = _path_parts(path)
    for part in parts:
        document = document[part]
    return document, last


def _lookup(document: Any, path: str) -> Any:
    try:
        parent, key = _walk(document, path)
        return parent[key]
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def plain(value: Decimal) -> str:
    """A decimal as receipts write it: positional, no trailing zeros ("427.5", "86400", "0")."""
    return format(value.normalize(context=_WIDE), "f")


def _text(value: Any) -> Any:
    """A term as a receipt writes it: decimals and base units as strings, counts as numbers."""
    return plain(value) if isinstance(value, Decimal) else value


_STRING_INTEGERS = ("spon.floor", "spon.remainder", "spon.amount")


def _write(receipt: dict[str, Any], terms: Mapping[str, Any]) -> None:
    for path, value in terms.items():
        parent, key = _walk(receipt, path)
        parent[key] = str(value) if path in _STRING_INTEGERS else _text(value)


def receipt_check(receipt: Mapping[str, Any]) -> list[str]:
    """Problems with a receipt: inputs that cannot be computed with, or a stated term that is not
    what its inputs give. Empty: the receipt is consistent (every term, the points and, when
    allocated, the $SPON amount follow from its inputs)."""
    try:
        terms = reward_recompute(receipt)
    except ReceiptError as error:
        return [str(error)]
    problems = []
    if receipt.get("era", {}).get("emission") is None and receipt.get("spon") is not None:
        problems.append("spon: stated, but era.emission is missing")
    for path, value in terms.items():
        stated = _lookup(receipt, path)
        if stated is None:
            problems.append(f"{path}: missing (the inputs give {value})")
            continue
        try:
            equal = (Decimal(stated) if isinstance(value, Decimal) else _int(stated, path)) == value
        except (DecimalException, ReceiptError, TypeError, ValueError):
            equal = False
        if not equal:
            problems.append(f"{path}: the receipt says {stated}, the inputs give {value}")
    return problems


def receipt_build(receipt: dict[str, Any]) -> dict[str, Any]:
    """Fill a receipt's computed terms from its inputs (in place; returns it). What the server
    writes is what `reward_recompute` gives, by construction."""
    receipt.setdefault("version", VERSION)
    receipt.setdefault("formula", FORMULA)
    _write(receipt, reward_recompute(receipt))
    return receipt


# --- $SPON shares ------------------------------------------------------------------------------


def spon_split(points_by_node: Mapping[Any, Any], emission: int) -> dict[str, Any]:
    """Pro rata shares of `emission` base units: {"amounts": {node: int}, "floors", "remainders",
    "total_points": Decimal, "cutoff": {"remainder", "node_id"} | None}. Floors first, then the
    left-over units one each by largest remainder, ties to the lower node id (node ids must be
    mutually comparable). Σ amounts == emission when the total points are positive, else 0."""
    emission = _int(emission, "emission")
    micro = {}
    for node, points in points_by_node.items():
        try:
            micro[node] = _micro_points(_dec(points, "points"), "points")
        except ReceiptError as error:
            raise ReceiptError(f"node {node}: {error}") from None
    total = sum(micro.values())
    floors: dict[Any, int] = {}
    remainders: dict[Any, int] = {}
    for node, mine in micro.items():
        floors[node], remainders[node] = divmod(emission * mine, total) if total else (0, 0)
    left = emission - sum(floors.values()) if total else 0
    amounts = dict(floors)
    cutoff = None
    if left:
        # Fewer than len(nodes) units are left (each remainder is below one unit); a heap would
        # take O(n log left), sorting is simpler and fast enough at 100k nodes.
        order = sorted((node for node in remainders if remainders[node]), key=lambda n: (-remainders[n], n))
        for node in order[:left]:
            amounts[node] += 1
        last = order[left - 1]
        cutoff = {"remainder": remainders[last], "node_id": last}
    return {
        "amounts": amounts,
        "floors": floors,
        "remainders": remainders,
        "total_points": Decimal(total).scaleb(-PLACES),
        "cutoff": cutoff,
    }


def spon_shares(points_by_node: Mapping[Any, Any], emission: int) -> dict[Any, int]:
    """{node: base units} of `emission`, pro rata to points (see spon_split for the rounding)."""
    return spon_split(points_by_node, emission)["amounts"]


def receipts_allocate(receipts: list[dict[str, Any]], emission: int) -> list[dict[str, Any]]:
    """Share the era's emission over built receipts (in place; returns them): each gets the era's
    emission, total points and remainder cutoff, and its spon terms."""
    split = spon_split({r["node_id"]: r["points"] for r in receipts}, emission)
    cutoff = split["cutoff"]
    era_terms = {
        "emission": str(emission),
        "total_points": plain(split["total_points"]),
        "remainder_cutoff": None
        if cutoff is None
        else {"remainder": str(cutoff["remainder"]), "node_id": cutoff["node_id"]},
    }
    for receipt in receipts:
        node = receipt["node_id"]
        receipt.setdefault("era", {}).update(era_terms)
        receipt["spon"] = {
            "floor": str(split["floors"][node]),
            "remainder": str(split["remainders"][node]),
            "remainder_unit": split["amounts"][node] - split["floors"][node],
            "amount": str(split["amounts"][node]),
        }
    return receipts


def era_check(receipts: list[Mapping[str, Any]]) -> list[str]:
    """Problems across one era's receipts: each receipt's own (receipt_check), one emission,
    total and cutoff for all, the total equal to the sum of the points, the amounts summing to
    the emission, and the same parameters (k, threshold, weights, bonus, tier multipliers) for
    every node."""
    problems = []
    for receipt in receipts:
        problems += [f"node {receipt.get('node_id')}: {p}" for p in receipt_check(receipt)]
    if not receipts:
        return problems
    try:
        problems += _era_problems(receipts)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, DecimalException) as error:
        problems.append(f"the receipts cannot be compared with each other: {error!r}")
    return problems


def _era_problems(receipts: list[Mapping[str, Any]]) -> list[str]:
    problems = []
    shared = {
        (r["era"]["emission"], r["era"]["total_points"], repr(r["era"].get("remainder_cutoff"))) for r in receipts
    }
    if len(shared) > 1:
        problems.append("the receipts disagree on the era's emission, total points or remainder cutoff")
    ids = [r["node_id"] for r in receipts]
    if len(set(ids)) != len(ids):
        problems.append("a node has more than one receipt")
    emission = int(receipts[0]["era"]["emission"])
    total = sum(Decimal(r["points"]) for r in receipts)
    if total != Decimal(receipts[0]["era"]["total_points"]):
        problems.append(f"era.total_points: {receipts[0]['era']['total_points']}, the receipts sum to {total}")
    paid = sum(int(r["spon"]["amount"]) for r in receipts)
    if paid != (emission if total > 0 else 0):
        problems.append(f"the amounts sum to {paid}, the emission is {emission}")
    params: dict[str, set] = {}
    for r in receipts:
        for line in r["base"]["units"]:
            params.setdefault(f"k ({line['kind']})", set()).add(Decimal(line["k"]))
        params.setdefault("uptime.threshold", set()).add(Decimal(r["uptime"]["threshold"]))
        params.setdefault("utilization.bonus", set()).add(Decimal(r["utilization"]["bonus"]))
        has_gpu = any(line["kind"] == "gpu" for line in r["base"]["units"])
        weights = tuple(Decimal(r["liveness"]["weights"].get(name, "0")) for name in RESOURCES)
        params.setdefault(f"liveness.weights ({'GPU' if has_gpu else 'no GPU'})", set()).add(weights)
        params.setdefault(f"trust.multiplier of tier {r['trust']['tier']}", set()).add(
            Decimal(r["trust"]["multiplier"])
        )
    problems += [
        f"{name}: differs between nodes ({len(values)} values)" for name, values in params.items() if len(values) > 1
    ]
    return problems
