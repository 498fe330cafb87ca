"""The admin of era rewards: each era across the network (and its re-run) and each node's reward."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core import admin_tools
from core.admin_tools import ReadOnlyAdmin
from core.errors import ApplicationError
from core.money import format_usd
from providers.earnings import spon_text
from providers.models import NodeReward, RewardEra

_RERUN_TEMPLATE = """{% extends "admin/base_site.html" %}
{% block breadcrumbs %}<div class="breadcrumbs">
<a href="{% url 'admin:index' %}">Home</a> &rsaquo;
<a href="{% url 'admin:providers_rewardera_changelist' %}">Reward eras</a> &rsaquo;
<a href="{% url 'admin:providers_rewardera_change' era.id %}">{{ era }}</a> &rsaquo; Re-run
</div>{% endblock %}
{% block content %}
<p>Re-run {{ era }} ({{ era.started_at|date:"Y-m-d H:i" }} – {{ era.ended_at|date:"Y-m-d H:i" }} UTC): every
node's receipt is recomputed from the era's stored inputs. Idempotent: when nothing changed, nothing is
written but the run count; a changed floor top-up posts only the difference to the ledger.</p>
<form method="post">{% csrf_token %}
<div class="submit-row"><input type="submit" class="default" value="Re-run the era" data-testid="rerun-submit"></div>
</form>
{% endblock %}
"""


def _era_rerun(era: RewardEra) -> str:
    """Re-run one era (providers.era_rewards) and say what changed, for the admin's message."""
    from providers.era_rewards import era_rewards_run

    after = era_rewards_run(era_start=era.started_at)
    changed = after.changed
    what = "no change" if not changed else f"{changed} receipt{'' if changed == 1 else 's'} changed"
    return f"{after}: {what} (run {after.runs}; {after.nodes} nodes, {spon_text(after.spon)} $SPON)."


Column = Callable[[admin.ModelAdmin, Model], str]


def _column(field: str, description: str, show: Callable[[int], str]) -> Column:
    """A read-only column (in the list or the form): the model's `field` through `show`."""

    @admin.display(description=description)
    def column(model_admin: admin.ModelAdmin, obj: Model) -> str:
        return show(getattr(obj, field))

    return column


def usd_column(field: str, description: str) -> Column:
    """A micro-USD field in dollars, to six decimals."""
    return _column(field, description, lambda micros: format_usd(micros, 6))


def spon_column(field: str, description: str) -> Column:
    """A field in $SPON base units, as $SPON."""
    return _column(field, description, spon_text)


@admin.register(RewardEra)
class RewardEraAdmin(ReadOnlyAdmin):
    """Each era's rewards across the network, read-only. "Re-run" (staff who may change eras)
    recomputes an era from its stored inputs: idempotent, it reports "no change" or how many
    receipts changed."""

    list_display = (
        "started_at",
        "nodes",
        "points",
        "spon_display",
        "floor_budget_display",
        "floor_wanted_display",
        "floor_paid_display",
        "pool_left_display",
        "floor_ratio",
        "runs",
        "changed",
        "computed_at",
        "rewards_link",
    )
    date_hierarchy = "started_at"
    actions = ("rerun",)
    fields = (
        "started_at",
        "ended_at",
        "nodes",
        "points",
        "emission_display",
        "spon_display",
        "spon_usd_rate",
        "floor_budget_display",
        "floor_wanted_display",
        "floor_paid_display",
        "pool_left_display",
        "floor_ratio",
        "runs",
        "changed",
        "computed_at",
        "params_pretty",
        "rewards_link",
        "rerun_link",
    )
    readonly_fields = fields

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("providers.change_rewardera")

    spon_display = spon_column("spon", "$SPON issued")
    emission_display = spon_column("emission", "Emission ($SPON)")
    floor_budget_display = usd_column("floor_budget_micros", "Floor budget")
    floor_wanted_display = usd_column("floor_wanted_micros", "Floor wanted")
    floor_paid_display = usd_column("floor_paid_micros", "Floor paid")
    pool_left_display = usd_column("floor_pool_left_micros", "Pool left")

    @admin.display(description="Parameters")
    def params_pretty(self, obj: RewardEra) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.params, indent=2, sort_keys=True, default=str))

    @admin.display(description="Receipts")
    def rewards_link(self, obj: RewardEra) -> str:
        return admin_tools.changelist_link(NodeReward, f"{obj.nodes} node rewards", era__id__exact=obj.id)

    @admin.display(description="Re-run")
    def rerun_link(self, obj: RewardEra) -> str:
        url = reverse("admin:providers_rewardera_rerun", args=[obj.id])
        return format_html('<a class="button" href="{}" data-testid="rerun-link">Re-run this era…</a>', url)

    @admin.action(description="Re-run the selected eras (recompute every receipt; idempotent)", permissions=["rerun"])
    def rerun(self, request: HttpRequest, queryset) -> None:
        for era in queryset.order_by("started_at"):
            self._run(request, era)

    def _run(self, request: HttpRequest, era: RewardEra) -> None:
        try:
            self.message_user(request, _era_rerun(era), messages.SUCCESS)
        except ApplicationError as exc:
            self.message_user(request, f"{era}: {exc.message}", messages.ERROR)

    def get_urls(self):
        return [
            path(
                "<int:era_id>/rerun/",
                self.admin_site.admin_view(self.rerun_view),
                name="providers_rewardera_rerun",
            ),
            *super().get_urls(),
        ]

    def rerun_view(self, request: HttpRequest, era_id: int) -> HttpResponse:
        """GET: what a re-run does, and the button; POST: re-run, then back to the era."""
        if not self.has_rerun_permission(request):
            raise PermissionDenied
        era = get_object_or_404(RewardEra, id=era_id)
        if request.method == "POST":
            self._run(request, era)
            return redirect("admin:providers_rewardera_change", era.id)
        context = {**self.admin_site.each_context(request), "era": era, "title": f"Re-run {era}"}
        return TemplateResponse(request, engines["django"].from_string(_RERUN_TEMPLATE), context)


@admin.register(NodeReward)
class NodeRewardAdmin(ReadOnlyAdmin):
    """One node's reward in one era, read-only, with its receipt; search by node id or name, or
    the provider's name or e-mail."""

    list_display = (
        "era",
        "node",
        "provider",
        "points",
        "spon_display",
        "usd_display",
        "rental_display",
        "floor_eligible",
        "topup_display",
    )
    list_filter = ("floor_eligible",)
    search_fields = ("=node__id", "node__name", "provider__display_name", "provider__user__email")
    list_select_related = ("era", "node", "provider")
    date_hierarchy = "era__started_at"
    fields = (
        "era",
        "node",
        "provider",
        "points",
        "spon_display",
        "usd_display",
        "online_seconds",
        "rental_display",
        "floor_eligible",
        "floor_reason",
        "floor_display",
        "wanted_display",
        "topup_display",
        "address",
        "receipt_pretty",
    )
    readonly_fields = fields

    spon_display = spon_column("spon", "$SPON")
    usd_display = usd_column("spon_usd_micros", "USD at the era's rate")
    rental_display = usd_column("rental_micros", "Rental")
    floor_display = usd_column("floor_micros", "Floor")
    wanted_display = usd_column("floor_wanted_micros", "Floor wanted")
    topup_display = usd_column("floor_topup_micros", "Floor top-up")

    @admin.display(description="Receipt")
    def receipt_pretty(self, obj: NodeReward) -> str:
        text = json.dumps(obj.receipt, indent=2, ensure_ascii=False)
        return format_html('<pre data-testid="receipt-json">{}</pre>', text)
