from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from core import admin_tools
from core.money import format_usd
from marketplace.deployments.services import deployment_close
from marketplace.models import (
    CloseReason,
    DemoMarket,
    Deployment,
    DeploymentEvent,
    Lease,
    MatchRecord,
    Offer,
    Order,
    Template,
)
from marketplace.store.services import template_check


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    """What the catalog lists right now (read-only; edit the node instead)."""

    list_display = (
        "id",
        "provider",
        "gpu_model",
        "gpu_count",
        "available_gpus",
        "region",
        "mode",
        "price_per_hour_micros",
        "price_per_gpu_hour_micros",
        "trust_tier",
        "uptime_30d",
    )
    list_filter = ("mode", "trust_tier", "gpu_tier", "region__continent", "gpu_model")
    search_fields = ("=id", "provider__display_name")
    list_select_related = ("provider", "region", "gpu_model")
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DemoMarket)
class DemoMarketAdmin(admin.ModelAdmin):
    list_display = ("seed", "nodes", "generator_version", "created_at")
    readonly_fields = ("seed", "nodes", "generator_version", "created_at")

    def has_add_permission(self, request) -> bool:
        return False


# --- Deployments (issue 5): browsed here, changed only through the services --------------------


def _usd_per_hour(micros: int | None) -> str:
    return "" if micros is None else f"{format_usd(micros, places=4)}/h"


class OrderInline(admin_tools.ReadOnlyInline):
    model = Order
    fields = ("attempt", "status", "created_at", "deadline_at", "matched_at", "excluded_node_ids", "failure_reason")
    readonly_fields = fields
    ordering = ("attempt",)
    show_change_link = True


class LeaseInline(admin_tools.ReadOnlyInline):
    model = Lease
    fields = ("node", "price", "gpus", "cpu_cores", "memory_gb", "status", "agent_state", "started_at", "ended_at",
              "close_reason")  # fmt: skip
    readonly_fields = fields
    ordering = ("started_at", "id")
    show_change_link = True

    @admin.display(description="Price")
    def price(self, lease: Lease) -> str:
        return _usd_per_hour(lease.price_per_hour_micros)


class DeploymentEventInline(admin_tools.ReadOnlyInline):
    model = DeploymentEvent
    fields = ("at", "kind", "message", "lease")
    readonly_fields = fields


class CloseForm(admin_tools.ReasonForm):
    reason = forms.CharField(max_length=300, help_text="Shown to the renter on the deployment's timeline.")


@admin.register(Deployment)
class DeploymentAdmin(admin_tools.ActionFormMixin, admin_tools.ReadOnlyAdmin):
    """Every deployment with its orders, leases and timeline. One action: close, as the renter's
    close does (the lease settled, the rest of the hold refunded), with a reason the renter sees."""

    list_display = ("id", "name", "owner", "mode", "status", "close_reason", "max_price", "created_at", "closed_at")
    list_filter = ("status", "mode", "close_reason", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "name", "owner__email")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    fields = (
        "owner", "name", "status", "mode", "failover", "max_price", "duration_seconds", "created_at", "started_at",
        "ends_at", "closed_at", "close_reason", "failure_reason", "hold", "spec_hash", "spec_as_submitted",
    )  # fmt: skip
    readonly_fields = fields
    inlines = (OrderInline, LeaseInline, DeploymentEventInline)
    actions = ("close_deployments",)

    @admin.display(description="Max price")
    def max_price(self, deployment: Deployment) -> str:
        return _usd_per_hour(deployment.max_price_per_hour_micros)

    @admin.display(description="Spec as submitted")
    def spec_as_submitted(self, deployment: Deployment) -> str:
        return format_html("<pre>{}</pre>", deployment.spec_source)

    def has_close_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("marketplace.change_deployment")

    @admin.action(description="Close the selected deployments…", permissions=["close"])
    def close_deployments(self, request: HttpRequest, queryset: QuerySet[Deployment]):
        form = CloseForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            for deployment in queryset.order_by("id"):
                if not deployment.is_active:
                    self.message_user(request, f"{deployment} was already {deployment.status}.", messages.WARNING)
                    continue
                deployment_close(
                    deployment=deployment, reason=CloseReason.ADMIN_CLOSED, message=form.cleaned_data["reason"]
                )
                self.log_change(request, deployment, f"Closed: {form.cleaned_data['reason']}")
                self.message_user(request, f"{deployment} closed.", messages.SUCCESS)
            return None
        return self.action_form_page(
            request,
            queryset,
            form,
            action="close_deployments",
            title="Close deployments",
            intro="Each active deployment is closed as if its renter had closed it: the lease stops and is "
            "settled, and what is left of the hold goes back to the renter. Closed ones are skipped.",
            submit_label="Close them",
        )


@admin.register(Order)
class OrderAdmin(admin_tools.ReadOnlyAdmin):
    list_display = ("id", "deployment", "attempt", "status", "created_at", "deadline_at", "matched_at")
    list_filter = ("status", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "=deployment__id")
    list_select_related = ("deployment",)
    ordering = ("-id",)


@admin.register(Lease)
class LeaseAdmin(admin_tools.ReadOnlyAdmin):
    list_display = ("id", "deployment", "node", "price", "gpus", "status", "agent_state", "started_at", "ended_at",
                    "close_reason")  # fmt: skip
    list_filter = ("status", "agent_state", "close_reason")
    search_fields = ("=id", "=deployment__id", "=node__id")
    list_select_related = ("deployment", "node")
    ordering = ("-id",)

    @admin.display(description="Price")
    def price(self, lease: Lease) -> str:
        return _usd_per_hour(lease.price_per_hour_micros)


@admin.register(MatchRecord)
class MatchRecordAdmin(admin_tools.ReadOnlyAdmin):
    """The matchmaker's choices: what the match proof publishes (candidates, weights, seed,
    commitment) and the score table of the top candidates."""

    list_display = ("id", "order", "winner_node_id", "candidate_count", "short_commitment", "created_at")
    search_fields = ("=id", "=order__id", "=order__deployment__id", "=winner_node_id", "commitment")
    list_select_related = ("order",)
    ordering = ("-id",)
    fields = ("order", "created_at", "winner_node_id", "candidate_count", "commitment", "seed", "weights_pretty",
              "scores_pretty", "candidates_pretty")  # fmt: skip
    readonly_fields = fields

    @admin.display(description="Commitment")
    def short_commitment(self, record: MatchRecord) -> str:
        return f"{record.commitment[:16]}…"

    @admin.display(description="Weights")
    def weights_pretty(self, record: MatchRecord) -> str:
        return _pretty(record.weights)

    @admin.display(description="Scores (best first)")
    def scores_pretty(self, record: MatchRecord) -> str:
        return _pretty(record.scores)

    @admin.display(description="Candidates (the proof's inputs)")
    def candidates_pretty(self, record: MatchRecord) -> str:
        return _pretty(record.candidates)


def _pretty(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


# --- Model store (issue 23 part 4) ---------------------------------------------------------------


class TemplateAdminForm(forms.ModelForm):
    """Saved only when the spec renders with the defaults, unpinned and pinned, in each of its
    modes, and the deployments parser accepts it (marketplace.store.services.template_check)."""

    class Meta:
        model = Template
        fields = (
            "name", "slug", "category", "description", "active", "order", "mode", "gpu_units", "min_vram_gb",
            "gpu_models", "ports", "env_vars", "hf_model_default", "max_price_per_hour", "spec_template",
        )  # fmt: skip
        widgets = {"spec_template": forms.Textarea(attrs={"rows": 24, "cols": 100, "spellcheck": "false"})}

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        for name, shape in (("gpu_models", str), ("ports", dict), ("env_vars", dict)):
            value = cleaned.get(name)
            if not isinstance(value, list) or not all(isinstance(item, shape) for item in value):
                self.add_error(name, f"must be a JSON list of {'strings' if shape is str else 'objects'}")
        for port in cleaned.get("ports") or []:
            number = port.get("port") if isinstance(port, dict) else None
            if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
                self.add_error("ports", 'each port is {"port": 1-65535, "as": …, "label": …}')
                break
        for var in cleaned.get("env_vars") or []:
            if isinstance(var, dict) and not isinstance(var.get("name"), str):
                self.add_error("env_vars", 'each variable has a "name"')
                break
        if self.errors:
            return cleaned
        candidate = self.instance
        for field, value in cleaned.items():
            setattr(candidate, field, value)
        for problem in template_check(candidate):
            field, _, message = problem.partition(": ")
            self.add_error(field if field in self.fields else None, message if field in self.fields else problem)
        return cleaned


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateAdminForm
    list_display = ("name", "slug", "category", "mode", "min_vram_gb", "max_price_per_hour", "active", "order")
    list_editable = ("active", "order")
    list_filter = ("active", "category", "mode")
    search_fields = ("slug", "name", "hf_model_default")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "category", "description", "active", "order")}),
        ("What it runs on", {"fields": ("mode", "gpu_units", "min_vram_gb", "gpu_models", "ports")}),
        ("What the user fills in", {"fields": ("env_vars", "hf_model_default")}),
        ("Spec", {"fields": ("max_price_per_hour", "spec_template")}),
        (None, {"fields": ("created_at", "updated_at")}),
    )
