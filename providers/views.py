"""Provider dashboard pages: onboarding, the live nodes table, node detail, tokens, prices, stake.

Views parse, call one service or selector, and render. Two self-refreshing parts (the nodes
table and a node's status) are django-template-partials named after the DOM id they replace.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing.payouts import provider_earnings
from core import clock
from core.errors import ApplicationError
from core.htmx import fragment_requested, vary_on_htmx
from core.money import HOURS_PER_MONTH
from core.query import query_page
from providers import earnings as earnings_reads
from providers import stake_chain
from providers.forms import MODE_HELP, NodeTokenForm, ProviderPricesForm, ProviderProfileForm, attach_error
from providers.models import GpuModel, GpuTier, Node, NodeStatus, ProviderProfile
from providers.pricing import (
    FIZZ_CPU_PER_CORE_MONTH,
    FIZZ_MEMORY_PER_GB_MONTH,
    FIZZ_STORAGE_PER_GB_MONTH,
    fizz_gpu_price_per_hour_micros,
    node_price_per_hour_micros,
)
from providers.selectors import (
    gpu_model_list,
    node_challenges,
    node_eras,
    node_events,
    provider_node_rows,
    stake_nodes,
    stake_summary,
)
from providers.services import (
    SPON_DECIMALS,
    get_node_for_provider,
    get_provider_for_user,
    node_maintenance_set,
    node_token_create,
    node_token_list,
    node_token_revoke,
    provider_onboard,
    provider_prices_update,
)
from providers.slashing import (
    APPEALABLE,
    MAX_APPEAL,
    appeal_create,
    get_slash_for_provider,
    slash_evidence,
    slash_list,
)
from providers.stake_chain import StakeWallet, faucet_enabled, stake_wallet
from providers.uptime import heartbeat_strip, node_uptime, uptime_daily

# Uptime at or above this is shown as fully up (a second of downtime in a quarter hour is noise).
UP = 0.999


def provider_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Log in, then be a provider: the view gets the profile; anyone else goes to onboarding."""

    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            provider = get_provider_for_user(request.user)  # type: ignore[arg-type]
        except ApplicationError:
            messages.info(request, "Set up your provider profile first: then you can add machines.")
            return redirect("providers:onboarding")
        return view(request, provider, *args, **kwargs)

    return wrapper


# --- Display helpers (presentation only) ---------------------------------------------------------


def ago(seconds: float | None) -> str:
    """12 -> '12 s ago'; None -> 'never'."""
    if seconds is None:
        return "never"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def spon(value: Decimal) -> str:
    """Decimal('2000') -> '2,000'; Decimal('0.5') -> '0.5' (whole $SPON, never base units)."""
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def cooldown_left(until: datetime | None, now: datetime) -> str:
    if until is None or until <= now:
        return ""
    left = until - now
    hours, rest = divmod(int(left / timedelta(seconds=1)), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{max(1, rest // 60)} min"


def _state(row: dict[str, Any]) -> str:
    if row["status"] == NodeStatus.ONLINE and row["in_maintenance"]:
        return "maintenance"
    return row["status"]


def _utilization(util: dict[str, Any]) -> str:
    parts = []
    if util.get("gpu_percent") is not None:
        parts.append(f"GPU {util['gpu_percent']:g}%")
    if util.get("cpu_percent") is not None:
        parts.append(f"CPU {float(util['cpu_percent']):.0f}%")
    if util.get("memory_used_gb") is not None:
        parts.append(f"{float(util['memory_used_gb']):.1f} GB RAM")
    return " · ".join(parts)


def _row_display(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    gpu_tier = row["gpu_tier"]
    return {
        **row,
        "cooldown_left": cooldown_left(row["rewards_eligible_from"], now),
        "state": _state(row),
        "last_seen_ago": ago(row["seconds_since_seen"]),
        "gpu_tier_label": GpuTier(gpu_tier).label if gpu_tier in GpuTier.values else gpu_tier,
        "utilization_display": _utilization(row["utilization"]),
    }


def _node_rows(provider: ProviderProfile, node_ids: list[int] | None = None) -> list[dict[str, Any]]:
    now = clock.now()
    return [_row_display(row, now) for row in provider_node_rows(provider=provider, node_ids=node_ids)]


def uptime_chart(days: list[dict[str, Any]], *, width: int = 1000, height: int = 240) -> dict[str, Any]:
    """Geometry for the 30-day uptime bars (0–100 %), one bar per UTC day, coloured by level."""
    left, right_margin, top, bottom = 48, 12, 12, 36
    plot_width, plot_height = width - left - right_margin, height - top - bottom
    baseline = top + plot_height
    slot = plot_width / max(len(days), 1)
    bars = []
    for index, item in enumerate(days):
        uptime = item["uptime"]
        bar_height = 0.0 if uptime is None else max(round(plot_height * uptime, 1), 1.0)
        x = round(left + index * slot + slot * 0.15, 1)
        bars.append(
            {
                "day": item["day"],
                "uptime": uptime,
                "level": uptime_level(uptime),
                "x": x,
                "y": round(baseline - (bar_height or 2.0), 1),
                "width": round(slot * 0.7, 1),
                "height": bar_height or 2.0,
                "label_x": round(x + slot * 0.35, 1),
                "labelled": index % 5 == 0 or index == len(days) - 1,
            }
        )
    ticks = [{"label": f"{pct}%", "y": round(baseline - plot_height * pct / 100, 1)} for pct in (0, 25, 50, 75, 100)]
    known = [item["uptime"] for item in days if item["uptime"] is not None]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right_margin,
        "baseline": baseline,
        "day_label_y": baseline + 16,
        "bars": bars,
        "ticks": ticks,
        "days": len(days),
        "average": sum(known) / len(known) if known else None,
    }


def uptime_level(uptime: float | None) -> str:
    """A colour class: the tier thresholds people care about (99 %, 95 %, 75 %)."""
    if uptime is None:
        return "none"
    if uptime >= 0.99:
        return "good"
    if uptime >= 0.95:
        return "fair"
    if uptime >= 0.75:
        return "poor"
    return "bad"


def strip_cells(buckets: list[dict[str, Any]], *, width: int = 1000, height: int = 32) -> dict[str, Any]:
    """The 24-hour heartbeat strip: one cell per bucket, with a title a person can read."""
    count = max(len(buckets), 1)
    slot = width / count
    cells = []
    for index, bucket in enumerate(buckets):
        start: datetime = bucket["start"].astimezone(UTC)
        end = buckets[index + 1]["start"].astimezone(UTC) if index + 1 < len(buckets) else None
        span = f"{start:%H:%M}–{end:%H:%M}" if end else f"{start:%H:%M}–now"
        uptime = bucket["uptime"]
        if uptime is None:
            kind, text = "none", "not registered yet"
        elif bucket["maintenance"]:
            kind, text = "maintenance", "maintenance (not counted)"
        elif uptime >= UP:
            kind, text = "up", "up"
        elif uptime <= 0:
            kind, text = "down", "down"
        else:
            kind, text = "partial", f"up {uptime:.0%}"
        cells.append(
            {
                "x": round(index * slot, 2),
                "width": round(max(slot - 1, 1), 2),
                "kind": kind,
                "title": f"{span} UTC: {text}",
                "start": start,
                "labelled": index % 12 == 0,
            }
        )
    return {"width": width, "height": height, "label_y": height + 14, "cells": cells}


def _hardware(node: Any) -> dict[str, Any]:
    hardware = node.hardware or {}
    gpus = [
        {
            "name": gpu.get("name") or "GPU",
            "memory_gb": round(gpu["memory_total_mib"] / 1024) if gpu.get("memory_total_mib") else None,
        }
        for gpu in hardware.get("gpus") or []
        if isinstance(gpu, dict)
    ]
    return {"gpus": gpus, "apple_chip": hardware.get("apple_chip")}


# --- Onboarding ----------------------------------------------------------------------------------


@login_required
def onboarding(request: HttpRequest) -> HttpResponse:
    """Become a provider; later, edit the same profile."""
    try:
        profile: ProviderProfile | None = get_provider_for_user(request.user)  # type: ignore[arg-type]
    except ApplicationError:
        profile = None
    if request.method == "POST":
        form = ProviderProfileForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                provider_onboard(
                    user=request.user,  # type: ignore[arg-type]
                    display_name=data["display_name"],
                    payout_evm_address=data["payout_evm_address"],
                    payout_solana_address=data["payout_solana_address"],
                    default_region=data["default_region"] or None,
                    default_mode=data["default_mode"],
                )
            except ApplicationError as exc:
                attach_error(form, exc)
            else:
                if profile is None:
                    messages.success(request, "You are a provider now. Create a node token to add your first machine.")
                else:
                    messages.success(request, "Your provider profile was saved.")
                return redirect("providers:dashboard")
    else:
        form = ProviderProfileForm.for_profile(profile)
    context = {"form": form, "profile": profile, "min_stake_per_gpu": spon(Decimal(settings.MIN_STAKE_PER_GPU_SPON))}
    return render(request, "providers/onboarding.html", context)


# --- Dashboard -----------------------------------------------------------------------------------


@provider_required
def dashboard(request: HttpRequest, provider: ProviderProfile) -> HttpResponse:
    rows = _node_rows(provider)
    context = {
        "provider": provider,
        "rows": rows,
        "online": sum(1 for row in rows if row["status"] == NodeStatus.ONLINE),
        "total": len(rows),
        "server_url": f"{request.scheme}://{request.get_host()}",
    }
    # Read with the rows: a node that registers between two refreshes changes what is needed.
    context["stake"] = _stake_display(stake_summary(provider=provider), with_history=False)
    if fragment_requested(request, "nodes-table"):
        # The table, and the "nodes online" and stake cards and the stake warning out of band, so
        # they never disagree with it (a new node must not sit beside "0 of 0 $SPON needed").
        html = render_to_string("providers/dashboard.html#nodes-table", context, request=request)
        for part in ("nodes-online", "stake-card", "stake-warning"):
            html += render_to_string(f"providers/dashboard.html#{part}", {**context, "oob": True}, request=request)
        response = HttpResponse(html)
    else:
        context |= {
            "earnings": provider_earnings(user=provider.user),
            "hold_hours": settings.EARNINGS_HOLD_HOURS,
            "rewards": earnings_reads.rewards_card(provider=provider),
        }
        response = render(request, "providers/dashboard.html", context)
    vary_on_htmx(response)
    return response


# --- Node detail and maintenance -----------------------------------------------------------------


@provider_required
def node_detail(request: HttpRequest, provider: ProviderProfile, node_id: int) -> HttpResponse:
    node = get_node_for_provider(provider=provider, node_id=node_id)
    # One row of the dashboard's table: the freshest heartbeat is in the cache, not the node row.
    (row,) = _node_rows(provider, node_ids=[node.id])
    if not node.is_simulated:
        # The stored uptimes are refreshed every few minutes; one node is cheap to compute now.
        row.update(node_uptime(node))
    context: dict[str, Any] = {"provider": provider, "node": node, "row": row}
    if fragment_requested(request, "node-status"):
        response = render(request, "providers/node_detail.html#node-status", context)
        vary_on_htmx(response)
        return response
    context.update(
        {
            "hardware": _hardware(node),
            "chart": uptime_chart(uptime_daily(node)),
            "strip": strip_cells(heartbeat_strip(node)),
            "events": node_events(node=node),
            "challenges": node_challenges(node=node),
            "eras": node_eras(node=node),
            **_node_rewards_context(request, node),
        }
    )
    response = render(request, "providers/node_detail.html", context)
    vary_on_htmx(response)
    return response


REWARDS_PER_PAGE = 10


def _node_rewards_context(request: HttpRequest, node: Node) -> dict[str, Any]:
    """The node page's Rewards section: its eras newest first, ten a page (?rewards_page=), each
    with its receipt explained term by term and recomputed."""
    paginator = Paginator(earnings_reads.node_rewards(node=node), REWARDS_PER_PAGE)
    page = query_page(paginator, request.GET.get("rewards_page"))
    rows = [
        {
            **earnings_reads.reward_summary(reward),
            "explained": earnings_reads.receipt_explained(reward),
            "receipt_url": reverse("providers:node_reward_receipt", args=[node.id, reward.era_id]),
        }
        for reward in page.object_list
    ]
    return {"rewards_page": page, "reward_rows": rows}


@provider_required
def node_reward_receipt(request: HttpRequest, provider: ProviderProfile, node_id: int, era_id: int) -> HttpResponse:
    """One era's receipt as stored, as JSON: what spheron_sdk.rewards.reward_recompute reads."""
    node = get_node_for_provider(provider=provider, node_id=node_id)
    reward = earnings_reads.node_reward_for_era(node=node, era_id=era_id)
    if reward is None:
        raise Http404("No reward of this node in that era.")
    response = JsonResponse(reward.receipt, json_dumps_params={"indent": 2, "ensure_ascii": False})
    filename = f"receipt-node-{node.id}-{reward.era.started_at:%Y-%m-%d}.json"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


# --- Earnings ------------------------------------------------------------------------------------


def _days_param(raw: str | None) -> tuple[int, str]:
    """?days=: 7, 30 or 90; anything else is explained and the default shown."""
    if raw is None or raw == "":
        return earnings_reads.DEFAULT_DAYS, ""
    if len(raw) <= 3 and raw.isascii() and raw.isdigit() and int(raw) in earnings_reads.DAYS_CHOICES:
        return int(raw), ""
    choices = ", ".join(str(d) for d in earnings_reads.DAYS_CHOICES)
    return earnings_reads.DEFAULT_DAYS, (
        f"days: {raw[:20]!r} is not one of {choices}; showing the last {earnings_reads.DEFAULT_DAYS} days."
    )


@provider_required
def earnings(request: HttpRequest, provider: ProviderProfile, node_id: int | None = None) -> HttpResponse:
    """Per UTC day: rental income, $SPON rewards, floor top-ups and slashes, all nodes or one
    (?node=<id> or /provider/nodes/<id>/earnings/). A bad ?days= or ?node= is a 400 that says why
    (the page still shows the default); another provider's node is a 404."""
    days, error = _days_param(request.GET.get("days"))
    errors = [error] if error else []
    node = None
    raw_node = request.GET.get("node", "") if node_id is None else str(node_id)
    if raw_node:
        if len(raw_node) <= 18 and raw_node.isascii() and raw_node.isdigit():
            node = get_node_for_provider(provider=provider, node_id=int(raw_node))
        else:
            errors.append(f"node: {raw_node[:20]!r} is not a node id; showing all your nodes.")
    today = clock.now().astimezone(UTC).date()
    report = earnings_reads.earnings_days(provider=provider, days=days, today=today, node=node)
    context = {
        "provider": provider,
        "report": report,
        "chart": earnings_reads.earnings_chart(report),
        "rows": [_earnings_row(day) for day in reversed(report.days)],
        "totals": _earnings_row(report.totals),
        "days": days,
        "day_choices": earnings_reads.DAYS_CHOICES,
        "node": node,
        "nodes": list(Node.objects.filter(provider=provider).order_by("name", "id").values("id", "name")),
        "errors": errors,
        "series": earnings_reads.SERIES,
        "floor_cuts": earnings_reads.floor_cuts(provider=provider, days=days, today=today, node=node),
    }
    return render(request, "providers/earnings.html", context, status=400 if errors else 200)


def _earnings_row(day: earnings_reads.EarningsDay) -> dict[str, Any]:
    text = earnings_reads.usd_text
    return {
        "day": day.day,
        "item": day,
        "rental": text(day.rental_micros),
        "spon": earnings_reads.spon_text(day.spon, places=6),
        "spon_usd": text(day.spon_usd_micros),
        "floor": text(day.floor_micros),
        "slash_spon": earnings_reads.spon_text(day.slash_spon),
        "slash_usd": text(-day.slash_usd_micros) if day.slash_usd_micros is not None else "",
        "total": text(day.total_micros),
    }


@require_POST
@provider_required
def node_maintenance(request: HttpRequest, provider: ProviderProfile, node_id: int) -> HttpResponse:
    on = request.POST.get("on") == "1"
    node = node_maintenance_set(provider=provider, node_id=node_id, on=on)
    if on:
        messages.success(request, f"{node.name} is in maintenance: renters cannot match it, and the time is excused.")
    else:
        messages.success(request, f"{node.name} is out of maintenance and matchable again when online.")
    return redirect("providers:node", node_id=node.id)


# --- Node tokens ---------------------------------------------------------------------------------


@provider_required
def tokens(request: HttpRequest, provider: ProviderProfile) -> HttpResponse:
    new_token = None
    if request.method == "POST":
        form = NodeTokenForm(request.POST, provider=provider)
        if form.is_valid():
            try:
                token, raw = node_token_create(
                    provider=provider,
                    label=form.cleaned_data["label"],
                    mode=form.cleaned_data["mode"],
                    region=form.cleaned_data["region"] or None,
                )
            except ApplicationError as exc:
                attach_error(form, exc)
            else:
                # Shown in this response only (no-store), never kept anywhere: a redirect would need
                # the raw token to wait in the session row until the next page view.
                new_token = {"id": token.id, "raw": raw}
                messages.success(request, f"Token “{token.label}” created. Copy it now: it will not be shown again.")
                form = NodeTokenForm(provider=provider)
    else:
        form = NodeTokenForm(provider=provider)
    context = {
        "provider": provider,
        "form": form,
        "tokens": node_token_list(provider=provider),
        "new_token": new_token,
        "mode_help": MODE_HELP,
    }
    response = render(request, "providers/tokens.html", context)
    if new_token:
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@provider_required
def token_revoke(request: HttpRequest, provider: ProviderProfile, token_id: int) -> HttpResponse:
    token = node_token_revoke(provider=provider, token_id=token_id)
    text = f"Token “{token.label}” ({token.prefix}…) is revoked."
    if token.node_id:
        text += " Its node can no longer send heartbeats and will go offline."
    messages.success(request, text)
    return redirect("providers:tokens")


# --- Prices --------------------------------------------------------------------------------------

EXAMPLE_MACHINE = {"cpu_cores": 16, "memory_gb": 64, "storage_gb": 500}


def _example(provider: ProviderProfile, models: list[GpuModel], gpu_prices: dict[str, int]) -> dict[str, Any]:
    """An example machine priced with the provider's list prices: what a renter would pay per hour."""
    priced = [model for model in models if model.slug in gpu_prices]
    model = priced[0] if priced else next((m for m in models if m.slug == "rtx4090"), models[0] if models else None)
    gpu_micros = gpu_prices.get(model.slug) if model else None
    monthly = {
        "cpu": EXAMPLE_MACHINE["cpu_cores"] * provider.cpu_price_per_core_month_micros,
        "memory": EXAMPLE_MACHINE["memory_gb"] * provider.memory_price_per_gb_month_micros,
        "storage": EXAMPLE_MACHINE["storage_gb"] * provider.storage_price_per_gb_month_micros,
    }
    hourly = node_price_per_hour_micros(
        gpu_count=1,
        gpu_price_per_hour_micros=gpu_micros or 0,
        cpu_cores=EXAMPLE_MACHINE["cpu_cores"],
        cpu_price_per_core_month_micros=provider.cpu_price_per_core_month_micros,
        memory_gb=EXAMPLE_MACHINE["memory_gb"],
        memory_price_per_gb_month_micros=provider.memory_price_per_gb_month_micros,
        storage_gb=EXAMPLE_MACHINE["storage_gb"],
        storage_price_per_gb_month_micros=provider.storage_price_per_gb_month_micros,
    )
    return {
        **EXAMPLE_MACHINE,
        "model": model,
        "gpu_micros": gpu_micros,
        "monthly": monthly,
        "monthly_per_hour": {key: value // HOURS_PER_MONTH for key, value in monthly.items()},
        "hourly": hourly,
        "month": hourly * HOURS_PER_MONTH,
    }


@provider_required
def prices(request: HttpRequest, provider: ProviderProfile) -> HttpResponse:
    models = list(gpu_model_list())
    current = dict(provider.gpu_prices.values_list("gpu_model_id", "price_per_hour_micros"))
    form_args = {"provider": provider, "gpu_models": models, "gpu_prices": current}
    if request.method == "POST":
        form = ProviderPricesForm(request.POST, **form_args)
        if form.is_valid():
            try:
                provider_prices_update(
                    provider=provider,
                    gpu_prices=form.gpu_prices(),
                    cpu_per_core_month=form.cleaned_data["cpu_per_core_month"],
                    memory_per_gb_month=form.cleaned_data["memory_per_gb_month"],
                    storage_per_gb_month=form.cleaned_data["storage_per_gb_month"],
                )
            except ApplicationError as exc:
                attach_error(form, exc)
                provider.refresh_from_db()  # the service set fields on it before it failed
            else:
                messages.success(request, "Prices saved. They apply to provider-mode nodes registered from now on.")
                return redirect("providers:prices")
    else:
        form = ProviderPricesForm(**form_args)
    fizz_units = {
        "cpu_per_core_month": FIZZ_CPU_PER_CORE_MONTH,
        "memory_per_gb_month": FIZZ_MEMORY_PER_GB_MONTH,
        "storage_per_gb_month": FIZZ_STORAGE_PER_GB_MONTH,
    }
    gpu_rows = [{**row, "fizz": fizz_gpu_price_per_hour_micros(row["model"].multiplier)} for row in form.gpu_rows()]
    context = {
        "provider": provider,
        "form": form,
        "unit_rows": [{**row, "fizz": fizz_units[row["field"].name]} for row in form.unit_rows()],
        "groups": [
            (label, [row for row in gpu_rows if row["model"].kind == kind]) for kind, label in GpuModel.Kind.choices
        ],
        "example": _example(provider, models, current),
        "offered": len(current),
    }
    return render(request, "providers/prices.html", context)


# --- Stake ---------------------------------------------------------------------------------------


def stake_units_text(summary: dict[str, Any]) -> str:
    """What the stake must cover, in units: '2 GPUs', '1 CPU-only machine',
    '2 GPUs + 1 CPU-only machine' (a CPU-only or Apple machine is one unit, as registered)."""
    parts = []
    for count, noun in (
        (summary["gpu_units"], "GPU"),
        (summary["cpu_machines"], "CPU-only machine"),
        (summary["apple_machines"], "Apple machine"),
    ):
        if count:
            parts.append(f"{count} {noun}{'' if count == 1 else 's'}")
    return " + ".join(parts) or "0 GPUs"


def _stake_display(summary: dict[str, Any], *, with_history: bool = True) -> dict[str, Any]:
    unit = Decimal(10) ** SPON_DECIMALS
    return {
        **summary,
        "staked_display": spon(summary["staked"]),
        "required_display": spon(summary["required"]),
        "shortfall_display": spon(summary["shortfall"]),
        "min_per_gpu_display": spon(summary["min_per_gpu"]),
        "units_display": stake_units_text(summary),
        "machines": summary["cpu_machines"] + summary["apple_machines"],
        "covered": summary["shortfall"] <= 0 and not summary["uncovered_nodes"],
        "history_rows": [
            {
                "event": event,
                "amount_display": spon(event.amount / unit),
                "balance_display": spon(event.balance_after / unit),
            }
            for event in (summary["history"] if with_history else ())
        ],
    }


def _wallet_display(wallet: StakeWallet) -> dict[str, Any]:
    unit = Decimal(10) ** SPON_DECIMALS
    now = clock.now()
    return {
        "wallet": wallet,
        "amount_spon": spon(wallet.amount / unit),
        "unstake_spon": spon(wallet.unstake_amount / unit),
        "chain_active_display": spon(wallet.chain_active / unit),
        "admin_recorded_display": spon(wallet.admin_recorded / unit),
        "pending_display": spon(wallet.pending_total / unit),
        "withdrawable_display": spon(wallet.withdrawable / unit),
        "pending_rows": [
            {
                "amount_display": spon(Decimal(item.amount) / unit),
                "unlock_at": item.unlock_at,
                "unlocked": item.unlocked,
                "left": cooldown_left(item.unlock_at, now),
            }
            for item in wallet.pending
        ],
    }


def _stake_context(request: HttpRequest, provider: ProviderProfile) -> dict[str, Any]:
    summary = _stake_display(stake_summary(provider=provider))
    shortfall = int(summary["shortfall"] * 10**SPON_DECIMALS)
    wallet = stake_wallet(
        provider=provider,
        user=request.user,  # type: ignore[arg-type]
        amount_text=request.GET.get("amount", "")[:80],
        unstake_text=request.GET.get("unstake", "")[:80],
        default_amount=shortfall or int(summary["min_per_gpu"] * 10**SPON_DECIMALS),
    )
    node_needs = [
        {"name": name, "units": units, "needs_display": spon(summary["min_per_gpu"] * units), "covered": covered}
        for name, units, covered in stake_nodes(provider=provider).values_list("name", "gpu_count", "stake_covered")
    ]
    return {
        "provider": provider,
        "stake": summary,
        "node_needs": node_needs,
        "slash_rows": _slash_rows(provider),
        "max_appeal": MAX_APPEAL,
        **_wallet_display(wallet),
    }


@provider_required
def stake(request: HttpRequest, provider: ProviderProfile) -> HttpResponse:
    return render(request, "providers/stake.html", _stake_context(request, provider))


def _tx_display(tx: Any) -> dict[str, str]:
    tx_hash = tx.tx_hash if tx is not None else ""
    return {
        "hash": tx_hash,
        "url": tx.chain.explorer_url(tx_hash) if tx_hash else "",
        "status": tx.get_status_display() if tx is not None else "",
    }


def _slash_rows(provider: ProviderProfile) -> list[dict[str, Any]]:
    unit = Decimal(10) ** SPON_DECIMALS
    rows = []
    for slash in slash_list(provider=provider):
        tx = _tx_display(slash.chain_tx)
        appeal = getattr(slash, "appeal", None)
        rows.append(
            {
                "slash": slash,
                "amount_display": spon(slash.amount / unit),
                "slashed_display": spon(slash.amount_slashed / unit) if slash.amount_slashed is not None else "",
                "evidence": f"{slash.evidence_type} {slash.evidence_id}".strip(),
                "evidence_url": reverse("providers:slash", args=[slash.id]) if slash.evidence_type else "",
                "tx_hash": tx["hash"],
                "tx_url": tx["url"],
                "tx_status": tx["status"],
                "appeal": appeal,
                "can_appeal": appeal is None and slash.status in APPEALABLE,
                "refund_display": spon(appeal.refund_amount / unit) if appeal and appeal.refund_amount else "",
                "refund_tx": _tx_display(appeal.refund_tx) if appeal and appeal.refund_tx_id else None,
            }
        )
    return rows


@provider_required
def slash_detail(request: HttpRequest, provider: ProviderProfile, slash_id: int) -> HttpResponse:
    """One slash of the provider with its evidence (the lease's meter and the node's events, or the
    era's failed challenges); another provider's slash is a 404."""
    slash = get_slash_for_provider(provider=provider, slash_id=slash_id)
    unit = Decimal(10) ** SPON_DECIMALS
    context = {
        "provider": provider,
        "slash": slash,
        "amount_display": spon(slash.amount / unit),
        "slashed_display": spon(slash.amount_slashed / unit) if slash.amount_slashed is not None else "",
        "evidence": slash_evidence(slash),
    }
    return render(request, "providers/slash_detail.html", context)


@require_POST
@provider_required
def slash_appeal(request: HttpRequest, provider: ProviderProfile, slash_id: int) -> HttpResponse:
    text = request.POST.get("text", "")
    try:
        appeal_create(provider=provider, slash_id=slash_id, text=text)
    except ApplicationError as exc:
        context = _stake_context(request, provider)
        in_row = any(row["can_appeal"] and row["slash"].id == slash_id for row in context["slash_rows"])
        context["appeal_error"] = {
            "slash_id": slash_id,
            "message": exc.message,
            "text": text[: MAX_APPEAL * 2],
            "shown_in_row": in_row,
        }
        return render(request, "providers/stake.html", context, status=exc.status)
    messages.success(request, f"Your appeal of slash #{slash_id} was sent: an admin will answer it here.")
    return redirect(reverse("providers:stake") + "#slashes")


@require_POST
@provider_required
def stake_faucet(request: HttpRequest, provider: ProviderProfile) -> HttpResponse:
    """Devnet only (404 elsewhere): test $SPON from the devnet treasury to the linked stake address."""
    if not faucet_enabled():
        raise Http404("No faucet here.")
    try:
        tx_hash = stake_chain.stake_faucet(user=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Sent {settings.STAKE_FAUCET_SPON:,} test $SPON to your stake address ({tx_hash}).")
    return redirect("providers:stake")
