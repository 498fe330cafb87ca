"""The admin of the hardware catalog (regions, GPU models), provider profiles and their nodes: the
nodes themselves, their tokens, outages, liveness challenges, eras and events."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.validators import MaxValueValidator, MinValueValidator
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from core.admin_tools import ReadOnlyAdmin
from providers.models import (
    GpuModel,
    Node,
    NodeChallenge,
    NodeEra,
    NodeEvent,
    NodeOutage,
    NodeToken,
    ProviderGpuPrice,
    ProviderProfile,
    Region,
)
from providers.services import node_admin_save, node_review_clear, node_token_revoke


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "continent", "country", "latitude", "longitude")
    list_filter = ("continent",)
    search_fields = ("code", "name", "country")


@admin.register(GpuModel)
class GpuModelAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "vendor", "kind", "vram_gb", "architecture", "gpu_tier", "multiplier")
    list_filter = ("vendor", "kind", "gpu_tier", "architecture")
    search_fields = ("slug", "name", "architecture")
    ordering = ("sort_order",)


class ProviderGpuPriceInline(admin.TabularInline):
    model = ProviderGpuPrice
    fields = ("gpu_model", "price_per_hour_micros")
    extra = 0


@admin.register(ProviderProfile)
class ProviderProfileAdmin(admin.ModelAdmin):
    list_display = ("display_name", "user", "default_region", "default_mode", "is_verified", "created_at")
    list_filter = ("is_verified", "default_mode", "default_region__continent")
    search_fields = ("display_name", "user__email", "payout_evm_address", "payout_solana_address")
    raw_id_fields = ("user",)
    # The stake changes only through StakeEvent (stake_record), which keeps the history.
    readonly_fields = ("staked_spon", "slash_count", "decide_slash", "created_at", "updated_at")
    list_select_related = ("user", "default_region")
    inlines = (ProviderGpuPriceInline,)

    @admin.display(description="Slash")
    def decide_slash(self, obj: ProviderProfile) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:providers_slash_add") + f"?provider={obj.pk}"
        return format_html('<a href="{}">Decide a slash of this provider…</a>', url)


NODE_PRICE_FIELDS = (
    "gpu_price_per_hour_micros",
    "cpu_price_per_core_month_micros",
    "memory_price_per_gb_month_micros",
    "storage_price_per_gb_month_micros",
)
MAX_PRICE_MICROS = 10**12  # $1,000,000 a unit: far above any price, far below an overflow


class NodeAdminForm(forms.ModelForm):
    """The per-resource prices are checked here: the constraint on them also names the node's
    hourly price, which is not in the form, so the form's own constraint check skips it."""

    class Meta:
        model = Node
        fields = NODE_PRICE_FIELDS  # the admin passes its own list (its fieldsets)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in NODE_PRICE_FIELDS:
            if name in self.fields:
                field = self.fields[name]
                field.validators += [MinValueValidator(0), MaxValueValidator(MAX_PRICE_MICROS)]
                field.widget.attrs.update(min=0, max=MAX_PRICE_MICROS)


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    form = NodeAdminForm
    list_display = (
        "id",
        "name",
        "provider",
        "mode",
        "region",
        "gpu_model",
        "gpu_count",
        "available_gpus",
        "price_per_hour_micros",
        "status",
        "in_maintenance",
        "trust_tier",
        "needs_review",
        "stake_covered",
        "is_simulated",
        "uptime_30d",
        "last_seen_at",
    )
    list_filter = (
        "mode",
        "status",
        "in_maintenance",
        "needs_review",
        "stake_covered",
        "is_simulated",
        "trust_tier",
        "gpu_tier",
        "region__continent",
        "gpu_model",
    )
    actions = ("clear_review",)
    search_fields = ("=id", "name", "provider__display_name", "provider__user__email")
    list_select_related = ("provider", "region", "gpu_model")
    # Editable: who and where, status and maintenance, the per-resource prices, the review flag.
    # Read-only: what the agent reports (hardware), what leases keep (free capacity: an edit would
    # break free = totals − leases), what heartbeats and eras compute (uptime, trust tier), what the
    # stake decides (stake_covered) and what follows from the prices (the node's hourly price,
    # recomputed on save).
    readonly_fields = (
        "provider",
        "gpu_model",
        "vram_gb",
        "gpu_tier",
        "gpu_count",
        "cpu_cores",
        "memory_gb",
        "storage_gb",
        "bandwidth_mbps",
        "price_per_hour_micros",
        "price_per_gpu_hour_micros",
        "price_per_vram_gb_micros",
        "available_gpus",
        "available_cpu_cores",
        "available_memory_gb",
        "available_storage_gb",
        "trust_tier",
        "uptime_1d",
        "uptime_7d",
        "uptime_30d",
        "stake_covered",
        "last_seen_at",
        "created_at",
        "updated_at",
    )
    show_full_result_count = False  # COUNT(*) over 100k+ rows on every page load is not worth it
    fieldsets = (
        (None, {"fields": ("provider", "name", "mode", "region", "status", "in_maintenance")}),
        (
            "Hardware",
            {
                "fields": (
                    "gpu_model",
                    "gpu_count",
                    "vram_gb",
                    "gpu_tier",
                    "cpu_cores",
                    "memory_gb",
                    "storage_gb",
                    "bandwidth_mbps",
                )
            },
        ),
        (
            "Prices (micro-USD)",
            {
                "fields": (
                    "gpu_price_per_hour_micros",
                    "cpu_price_per_core_month_micros",
                    "memory_price_per_gb_month_micros",
                    "storage_price_per_gb_month_micros",
                    "price_per_hour_micros",
                    "price_per_gpu_hour_micros",
                    "price_per_vram_gb_micros",
                )
            },
        ),
        (
            "Free capacity",
            {"fields": ("available_gpus", "available_cpu_cores", "available_memory_gb", "available_storage_gb")},
        ),
        ("Reliability", {"fields": ("trust_tier", "uptime_1d", "uptime_7d", "uptime_30d", "last_seen_at")}),
        ("Review", {"fields": ("needs_review", "review_reason", "stake_covered")}),
        ("Audit", {"fields": ("created_at", "updated_at")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # nodes are registered by their agent (`fizz start`) or loaded by seed_demo

    def has_delete_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False  # leases, outages and eras refer to it: set its status to "Disabled by an admin"

    def save_model(self, request: HttpRequest, obj: Node, form, change: bool) -> None:
        ended = node_admin_save(
            node=obj,
            changed_fields=form.changed_data if change else (),
            initial_status=form.initial.get("status", obj.status),
            by=request.user,
        )
        if ended:
            self.message_user(
                request,
                f"Node {obj.name} is off the market: {ended} running lease(s) ended there, not charged from now; "
                "their deployments are being matched to other nodes (unless failover is off).",
                messages.WARNING,
            )

    @admin.action(description="Clear “needs review” on the selected nodes")
    def clear_review(self, request: HttpRequest, queryset) -> None:
        cleared = node_review_clear(node_ids=list(queryset.values_list("id", flat=True)), by=request.user)
        self.message_user(request, f"Cleared the review flag on {cleared} node(s).", messages.SUCCESS)


@admin.register(NodeToken)
class NodeTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "label", "provider", "mode", "region", "node", "created_at", "last_used_at", "revoked_at")
    list_filter = ("mode", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("=prefix", "label", "provider__display_name", "provider__user__email")
    list_select_related = ("provider", "region", "node")
    # Only a hash is stored; nothing here can show or change the token itself.
    fields = (
        "provider",
        "label",
        "mode",
        "region",
        "prefix",
        "token_hash",
        "node",
        "machine_id",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = tuple(field for field in fields if field != "label")
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a raw token is shown once, to the provider who makes it on the dashboard

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens (their nodes stop working)")
    def revoke(self, request: HttpRequest, queryset) -> None:
        count = 0
        for token in queryset.filter(revoked_at__isnull=True).select_related("provider"):
            node_token_revoke(provider=token.provider, token_id=token.id)
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)


@admin.register(NodeOutage)
class NodeOutageAdmin(admin.ModelAdmin):
    """Editable: an admin may correct an outage recorded in error (uptime is recomputed from these)."""

    list_display = ("node", "kind", "started_at", "ended_at", "reason")
    list_filter = ("kind", ("ended_at", admin.EmptyFieldListFilter))
    search_fields = ("=node__id", "node__name", "reason")
    raw_id_fields = ("node",)
    list_select_related = ("node",)
    date_hierarchy = "started_at"


@admin.register(NodeChallenge)
class NodeChallengeAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "node", "status", "issued_at", "expires_at", "answered_at", "failure_reason")
    list_filter = ("status",)
    search_fields = ("=public_id", "=node__id", "node__name")
    list_select_related = ("node",)
    date_hierarchy = "issued_at"


@admin.register(NodeEra)
class NodeEraAdmin(ReadOnlyAdmin):
    list_display = ("node", "started_at", "uptime", "outcome", "tier_before", "tier_after", "good_streak", "bad_streak")
    list_filter = ("outcome", "tier_after")
    search_fields = ("=node__id", "node__name")
    list_select_related = ("node",)
    date_hierarchy = "started_at"


@admin.register(NodeEvent)
class NodeEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "node", "kind", "message")
    list_filter = ("kind",)
    search_fields = ("=node__id", "node__name", "message")
    list_select_related = ("node",)
    date_hierarchy = "at"
