"""The earnings calculator (/provider/calculator/, on the onboarding page, and
GET /api/v1/providers/earnings-estimate): what a machine would earn a month before it is installed.

The points come from providers.rewards.earnings_estimate, which builds a one-era receipt with the
very code the eras use (spheron_sdk.rewards); the $SPON they are worth needs an assumption of the
$SPON one point earns (`spon_per_point_basis`), said on the page. Rental income: Fizz mode at the
fixed Fizz price (earnings_estimate's figures), provider mode at a price the user types (default:
the catalog's median for that model), less the platform fee of the mode.

One form validates the page, the fragment and the API alike: bounded numbers, the catalog's
models, no NUL bytes, each value at most MAX_CHARS characters, so no input costs more than a
few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from chain import rates
from core.errors import ApplicationError
from core.htmx import fragment_requested, vary_on_htmx
from core.money import HOURS_PER_MONTH, exact_usd, format_usd, parse_plain_decimal, usd_to_micros
from providers.models import LISTED, SPON_DECIMALS, GpuModel, GpuTier, Node, NodeMode, RewardEra
from providers.rewards import RewardParams, earnings_estimate, params_from_settings, spon_per_point
from providers.uptime import BEST_TIER, PROMOTE_AFTER, TIER_UPTIME

FRAGMENT_ID = "calculator-result"
MAX_CHARS = 24  # of any one value: "95.5", "0.175", "rtx4090"; longer is refused before parsing
MAX_GPUS = 64  # as many GPUs as an agent may report
MAX_CORES = 4096  # as many cores as an agent may report
MAX_PRICE_USD = Decimal(100)  # per GPU-hour, as a registering agent's price
NEW_NODE_TIER = 7
# When no era has closed with rewards yet: the era's emission shared by this many points
# (ours: 1,000,000 points is 2,000 RTX 4090s in tier 6). Setting: REWARD_CALCULATOR_NETWORK_POINTS.
DEFAULT_NETWORK_POINTS = Decimal(1_000_000)
# The onboarding page's example: an RTX 4090, a new node (tier 7), typical figures.
EXAMPLE = {"gpu": "rtx4090", "count": "1", "mode": "fizz", "tier": "7", "uptime": "95", "utilization": "60"}
FIELDS = ("gpu", "count", "cores", "mode", "price", "tier", "uptime", "utilization")


# --- The form ----------------------------------------------------------------------------------


class _Bounded:
    """A field that refuses a value longer than MAX_CHARS before parsing it."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and len(value) > MAX_CHARS:
            raise ValidationError(f"At most {MAX_CHARS} characters.", code="too_long")
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError("Null characters are not allowed.", code="null_characters_not_allowed")
        return super().to_python(value)  # type: ignore[misc]


class _Int(_Bounded, forms.IntegerField):
    pass


def _range(low: Any, high: Any, what: str) -> dict[str, str]:
    message = f"{what} from {low} to {high}."
    return {"min_value": message, "max_value": message, "invalid": message, "required": f"Enter {what.lower()}."}


class _Percent(_Bounded, forms.DecimalField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            min_value=Decimal(0),
            max_value=Decimal(100),
            max_digits=6,
            decimal_places=3,
            error_messages=_range(0, 100, "A percentage") | {"max_decimal_places": "At most 3 decimals."},
            **kwargs,
        )

    def to_python(self, value: Any) -> Any:
        value = value.strip().removesuffix("%") if isinstance(value, str) else value
        return super().to_python(value)


class CalculatorForm(forms.Form):
    gpu = forms.ChoiceField(
        label="Machine",
        choices=(),
        error_messages={"invalid_choice": "Not a machine of the catalog: choose a GPU, an Apple chip or a CPU class."},
    )
    count = _Int(
        label="GPUs", min_value=1, max_value=MAX_GPUS, initial=1, error_messages=_range(1, MAX_GPUS, "A GPU count")
    )
    cores = _Int(
        label="CPU cores",
        min_value=1,
        max_value=MAX_CORES,
        required=False,
        help_text="CPU-only and Apple machines",
        error_messages=_range(1, MAX_CORES, "A core count"),
    )
    mode = forms.ChoiceField(
        label="Mode",
        choices=NodeMode.choices,
        initial=NodeMode.FIZZ,
        error_messages={"invalid_choice": "Mode: fizz or provider."},
    )
    price = forms.CharField(
        label="Your price, USD per GPU-hour",
        required=False,
        max_length=MAX_CHARS,
        help_text="Provider mode; per machine-hour for a CPU-only or Apple machine. Empty: the market's median.",
    )
    tier = _Int(
        label="Trust tier", min_value=1, max_value=7, initial=NEW_NODE_TIER, error_messages=_range(1, 7, "A trust tier")
    )
    uptime = _Percent(label="Uptime %", initial=Decimal(95))
    utilization = _Percent(label="Utilization %", initial=Decimal(60), help_text="Leased share of online time")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "calc_%s")  # ids apart from a host page's own form (onboarding)
        super().__init__(*args, **kwargs)
        self.models = {model.slug: model for model in GpuModel.objects.all()}
        self.fields["gpu"].choices = [(slug, model.name) for slug, model in self.models.items()]

    def clean_price(self) -> Decimal | None:
        text = self.cleaned_data.get("price", "").strip()
        if not text:
            return None
        price = parse_plain_decimal(text.removeprefix("$"))
        if price is None or not 0 < price <= MAX_PRICE_USD or price != price.quantize(Decimal("0.000001")):
            raise ValidationError(f"A price in USD above 0 and at most {MAX_PRICE_USD}, e.g. 0.30.")
        return price

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        model = self.models.get(data.get("gpu", ""))
        if model is None:
            return data
        data["model"] = model
        gpu = model.kind == GpuModel.Kind.GPU
        mode = data.get("mode")
        if gpu and mode == NodeMode.FIZZ and (data.get("count") or 1) > 1:
            self.add_error(
                "count",
                "A Fizz node has one GPU (one node per device): enter 1, or provider mode for a multi-GPU machine.",
            )
        if not gpu and not data.get("cores") and "cores" not in self.errors:
            self.add_error("cores", f"How many CPU cores (threads) has the {model.name}?")
        tier = data.get("tier")
        if mode and tier is not None and tier < BEST_TIER.get(mode, 1):
            self.add_error(
                "tier",
                f"Fizz nodes reach tier {BEST_TIER[NodeMode.FIZZ]} at best: tiers 1–3 are for provider-mode nodes.",
            )
        return data

    def error_list(self) -> list[dict[str, str]]:
        return [
            {"field": name if name != "__all__" else "request", "message": str(message)}
            for name, messages in self.errors.items()
            for message in messages
        ]


def form_data(query: Any, *, defaults: dict[str, str] | None = None) -> dict[str, str]:
    """The calculator's fields from a query string (only its own keys; the last value of each)."""
    data = dict(defaults or {})
    for name in FIELDS:
        if name in query:
            data[name] = query.get(name)
    return data


# --- The estimate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SponBasis:
    """The $SPON one point is assumed to earn, and where that figure comes from."""

    spon_per_point: Decimal
    source: str  # "last_era" or "assumed"
    text: str


def spon_per_point_basis(params: RewardParams) -> SponBasis:
    """$SPON per point: the last era with rewards (its $SPON issued ÷ its total points); before any,
    an explicit assumption: the era's emission shared by REWARD_CALCULATOR_NETWORK_POINTS points
    (default 1,000,000)."""
    era = RewardEra.objects.filter(runs__gt=0, points__gt=0).order_by("-started_at").first()
    if era is not None:
        value = spon_per_point(emission_base_units=int(era.spon), total_points=Decimal(era.points))
        issued = _num(Decimal(int(era.spon)).scaleb(-SPON_DECIMALS))
        return SponBasis(
            spon_per_point=value,
            source="last_era",
            text=(
                f"The last closed era ({era.started_at:%Y-%m-%d}) shared {issued}"
                f" $SPON over {_num(era.points)} points: {_num(value)} $SPON per point. The real share depends on "
                "every node's points in each era."
            ),
        )
    network = Decimal(str(getattr(settings, "REWARD_CALCULATOR_NETWORK_POINTS", DEFAULT_NETWORK_POINTS)))
    value = params.era_emission_spon / network if network > 0 else Decimal(0)
    rtx4090s = f" (about {_num(network // params.k_per_gpu)} RTX 4090s in tier 6)" if params.k_per_gpu else ""
    return SponBasis(
        spon_per_point=value,
        source="assumed",
        text=(
            f"No era has closed with rewards yet, so this assumes the era's emission of "
            f"{_num(params.era_emission_spon)} $SPON is shared by {_num(network)} points network-wide"
            f"{rtx4090s}: {_num(value)} $SPON per point. The real share depends on every node's points that era."
        ),
    )


def market_median_price_micros(model_slug: str) -> int | None:
    """The catalog's median price per GPU-hour of a model's listed offers (as the market board
    computes it), or None when none is listed. Reads one partial index (gpu model, price)."""
    prices = Node.objects.filter(LISTED, gpu_model_id=model_slug).order_by("price_per_gpu_hour_micros")
    count = prices.count()
    if not count:
        return None
    middle = list(prices.values_list("price_per_gpu_hour_micros", flat=True)[(count - 1) // 2 : count // 2 + 1])
    return int(round(sum(middle) / len(middle)))


@dataclass
class Estimate:
    """Every figure of one estimate, in its natural unit, and each figure's formula in words."""

    inputs: dict[str, Any]
    model: GpuModel
    mode: str
    points_per_era: Decimal
    eras: Decimal
    basis: SponBasis
    spon_per_month: Decimal
    spon_rate: Decimal | None
    no_rate_reason: str
    spon_usd_micros: int | None
    price_per_hour_micros: int
    price_source: str
    leased_hours: Decimal
    gross_micros: int
    fee_rate: Decimal
    fee_micros: int
    net_micros: int
    total_usd_micros: int
    receipt: dict[str, Any]
    formulas: dict[str, str] = field(default_factory=dict)
    shown: dict[str, str] = field(default_factory=dict)  # figures as the page shows them
    notes: list[str] = field(default_factory=list)

    @property
    def tier7(self) -> bool:
        return self.inputs["tier"] == NEW_NODE_TIER


def _num(value: Decimal | int, places: int = 6) -> str:
    """A decimal for people: 2372.5 -> '2,372.5'; at most `places` decimals, truncated."""
    value = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _plain(value: Decimal) -> str:
    """An exact decimal string without an exponent: Decimal('1E+3') -> '1000'."""
    return f"{Decimal(value).normalize():f}"


def _pct(fraction: Decimal) -> str:
    return f"{_num(fraction * 100, 3)}%"


def estimate_compute(data: dict[str, Any]) -> Estimate:
    """The estimate for a valid form's cleaned data."""
    params = params_from_settings()
    model: GpuModel = data["model"]
    mode = data["mode"]
    gpu = model.kind == GpuModel.Kind.GPU
    units = data["count"] if gpu else data["cores"]
    uptime, utilization = data["uptime"] / 100, data["utilization"] / 100
    basis = spon_per_point_basis(params)
    quote = rates.quote_or_reason("SPON")
    rate = quote.quote.usd_per_unit if quote.quote else None
    raw = earnings_estimate(
        tier=model.gpu_tier,
        trust_tier=data["tier"],
        uptime=uptime,
        utilization=utilization,
        spon_per_point=basis.spon_per_point,
        spon_usd_rate=rate or Decimal(0),
        params=params,
        unit_kind="gpu" if gpu else "cpu",
        unit_count=units,
    )
    receipt = raw["receipt"]
    spon = Decimal(raw["spon_base_units"]).scaleb(-SPON_DECIMALS)
    leased_hours = raw["leased_hours"]
    if mode == NodeMode.FIZZ:
        price, price_source = raw["rental_price_per_hour_micros"], "fizz"
        gross, fee_rate, fee = raw["rental_gross_micros"], params.platform_fee_fizz, raw["rental_fee_micros"]
    else:
        per_unit = usd_to_micros(data["price"]) if data.get("price") is not None else None
        price_source = "yours"
        if per_unit is None:
            per_unit, price_source = market_median_price_micros(model.slug), "market_median"
        if per_unit is None:
            per_unit, price_source = raw["rental_price_per_hour_micros"] // (units if gpu else 1), "fizz_fallback"
        price = per_unit * (units if gpu else 1)
        fee_rate = Decimal(str(settings.PLATFORM_FEE_PROVIDER))
        gross = int((price * leased_hours).to_integral_value(rounding=ROUND_HALF_UP))
        fee = int((gross * fee_rate).to_integral_value(rounding=ROUND_HALF_UP))
    net = gross - fee
    spon_usd = raw["spon_usd_micros"] if rate is not None else None
    estimate = Estimate(
        inputs={
            "gpu": model.slug,
            "count": units if gpu else 1,
            "cores": None if gpu else units,
            "mode": mode,
            "tier": data["tier"],
            "uptime": uptime,
            "utilization": utilization,
        },
        model=model,
        mode=mode,
        points_per_era=raw["points_per_era"],
        eras=raw["eras"],
        basis=basis,
        spon_per_month=spon,
        spon_rate=rate,
        no_rate_reason=quote.reason,
        spon_usd_micros=spon_usd,
        price_per_hour_micros=price,
        price_source=price_source,
        leased_hours=leased_hours,
        gross_micros=gross,
        fee_rate=fee_rate,
        fee_micros=fee,
        net_micros=net,
        total_usd_micros=net + (spon_usd or 0),
        receipt=receipt,
    )
    _explain(estimate, params, units=units, gpu=gpu)
    if mode == NodeMode.FIZZ and data.get("price") is not None:
        estimate.notes.append("Fizz nodes rent at the fixed Fizz price: a typed price counts in provider mode only.")
    return estimate


def _explain(e: Estimate, params: RewardParams, *, units: int, gpu: bool) -> None:
    r = e.receipt
    line = r["base"]["units"][0]
    unit_word = ("GPU" if units == 1 else "GPUs") if gpu else ("core" if units == 1 else "cores")
    tier_name = GpuTier(e.model.gpu_tier).label
    uptime_text = _pct(e.inputs["uptime"])
    threshold = _pct(params.uptime_threshold)
    uptime_why = f"uptime {uptime_text} {'≥' if r['uptime']['factor'] == '1' else '<'} {threshold}"
    trust = r["trust"]
    e.shown = {
        "uptime": uptime_text,
        "utilization": _pct(e.inputs["utilization"]),
        "points": _num(e.points_per_era),
        "eras": _num(e.eras),
        "spon": _num(e.spon_per_month),
    }
    e.formulas = {
        "points": (
            f"{units} {unit_word} × {line['multiplier']} ({e.model.name}, {tier_name}) × k {line['k']}"
            f" × uptime factor {r['uptime']['factor']} ({uptime_why}) × liveness {r['liveness']['factor']}"
            f" (every challenge passed) × trust {trust['multiplier']} (tier {trust['tier']})"
            f" × utilization factor {r['utilization']['factor']} (1 + {r['utilization']['bonus']}"
            f" × {_num(Decimal(r['utilization']['utilization']))}) = {_num(e.points_per_era)} points an era"
        ),
        "eras": f"{HOURS_PER_MONTH} h a month ÷ 24 h an era = {_num(e.eras)} eras",
        "spon": (
            f"{_num(e.points_per_era)} points × ({HOURS_PER_MONTH} ÷ 24) eras × {_num(e.basis.spon_per_point)}"
            " $SPON per point"
            f" = {_num(e.spon_per_month)} $SPON"
        ),
        "spon_usd": (
            f"{_num(e.spon_per_month)} $SPON × ${_num(e.spon_rate)} per $SPON = {format_usd(e.spon_usd_micros, 6)}"
            if e.spon_rate is not None and e.spon_usd_micros is not None
            else f"no USD value: {e.no_rate_reason}"
        ),
        "gross": (
            f"{format_usd(e.price_per_hour_micros, 6)} an hour × {HOURS_PER_MONTH} h × uptime {uptime_text}"
            f" × utilization {_pct(e.inputs['utilization'])} = {_num(e.leased_hours)} leased hours"
            f" × {format_usd(e.price_per_hour_micros, 6)} = {format_usd(e.gross_micros, 6)}"
        ),
        "fee": f"{format_usd(e.gross_micros, 6)} × {_pct(e.fee_rate)} = {format_usd(e.fee_micros, 6)}",
        "net": f"{format_usd(e.gross_micros, 6)} − {format_usd(e.fee_micros, 6)} = {format_usd(e.net_micros, 6)}",
        "total": (
            f"{format_usd(e.net_micros, 6)} rental + {format_usd(e.spon_usd_micros, 6)} in $SPON"
            f" = {format_usd(e.total_usd_micros, 6)}"
            if e.spon_usd_micros is not None
            else f"{format_usd(e.net_micros, 6)} rental + {_num(e.spon_per_month)} $SPON (no USD rate)"
        ),
    }
    price_texts = {
        "fizz": (
            f"the fixed Fizz price: $0.175 per GPU-hour for an RTX 4090, scaled by the GPU tier multiplier"
            f" ({line['multiplier']})"
            if gpu
            else "the fixed Fizz price: $0.75 per core-month"
        ),
        "yours": "the price you typed",
        "market_median": f"the market's median for the {e.model.name} (listed offers now)",
        "fizz_fallback": f"no {e.model.name} is listed now, so the Fizz price stands in for a market price",
    }
    e.notes.append(
        f"Rental price: {price_texts[e.price_source]}."
        + (
            " A lease also pays $0.75 per CPU core, $0.10 per GB of RAM and $0.01 per GB of disk a month"
            " at Fizz prices for what it takes; not counted here."
            if gpu and e.mode == NodeMode.FIZZ
            else ""
        )
    )
    e.notes.append(
        f"Platform fee: {_pct(e.fee_rate)} in {NodeMode(e.mode).label} mode"
        + (" (5% protocol, 2% gateway)." if e.mode == NodeMode.FIZZ else ".")
    )
    if e.tier7:
        e.notes.append(
            f"New nodes start in tier 7, and tier 7 earns no $SPON rewards (multiplier 0) until promoted: "
            f"{PROMOTE_AFTER[NEW_NODE_TIER]} eras in a row above {TIER_UPTIME[NEW_NODE_TIER - 1]:.0%} uptime "
            f"move a node to tier 6 (multiplier {params.trust_multipliers[6]})."
        )


def estimate_json(e: Estimate) -> dict[str, Any]:
    """The API's answer: every decimal as a string, USD with 6 decimals."""
    return {
        "inputs": {
            **e.inputs,
            "uptime": str(e.inputs["uptime"]),
            "utilization": str(e.inputs["utilization"]),
            "machine": e.model.name,
            "gpu_tier": e.model.gpu_tier,
        },
        "points_per_era": _plain(e.points_per_era),
        "eras_per_month": _plain(e.eras.quantize(Decimal("0.000001"), rounding=ROUND_DOWN)),
        "spon_per_point": _plain(e.basis.spon_per_point),
        "spon_per_point_source": e.basis.source,
        "spon_per_point_assumption": e.basis.text,
        "spon_per_month": _plain(e.spon_per_month),
        "spon_usd_rate": _plain(e.spon_rate) if e.spon_rate is not None else None,
        "spon_usd_per_month": exact_usd(e.spon_usd_micros) if e.spon_usd_micros is not None else None,
        "no_rate_reason": e.no_rate_reason,
        "rental_price_per_hour": exact_usd(e.price_per_hour_micros),
        "rental_price_source": e.price_source,
        "leased_hours": _plain(e.leased_hours),
        "rental_gross": exact_usd(e.gross_micros),
        "platform_fee_rate": _plain(e.fee_rate),
        "platform_fee": exact_usd(e.fee_micros),
        "rental_net": exact_usd(e.net_micros),
        "total_usd": exact_usd(e.total_usd_micros),
        "formulas": e.formulas,
        "notes": e.notes,
        "receipt": e.receipt,
    }


def estimate_for_query(query: Any) -> Estimate:
    """The API's path: the same form, errors as one ApplicationError (400) naming each field."""
    form = CalculatorForm(form_data(query, defaults={"count": "1", "mode": NodeMode.FIZZ}))
    if not form.is_valid():
        errors = form.error_list()
        summary = "; ".join(f"{item['field']}: {item['message'].rstrip('.')}" for item in errors)
        raise ApplicationError(f"Invalid input. {summary}", {"errors": errors})
    return estimate_compute(form.cleaned_data)


# --- Pages -------------------------------------------------------------------------------------


def calculator_context(query: Any, *, defaults: dict[str, str] | None = None) -> dict[str, Any]:
    """The form and, when it is valid, the estimate: for the page, the fragment and onboarding."""
    form = CalculatorForm(form_data(query, defaults=EXAMPLE if defaults is None else defaults))
    estimate = estimate_compute(form.cleaned_data) if form.is_valid() else None
    return {"calc_form": form, "estimate": estimate}


def calculator(request: HttpRequest) -> HttpResponse:
    """GET: the calculator page (400 with the errors on bad input), or its result fragment (htmx,
    `#calculator-result`). Public: a prospective provider uses it before signing up."""
    context = calculator_context(request.GET)
    if fragment_requested(request, FRAGMENT_ID):
        # 200 even with errors: the fragment is the error message, swapped in as the form is typed
        # into (a 4xx would also log a failed request in the browser's console on every keystroke).
        return vary_on_htmx(render(request, "providers/_calculator_result.html", context))
    status = 400 if context["estimate"] is None else 200
    return vary_on_htmx(render(request, "providers/calculator.html", context, status=status))
