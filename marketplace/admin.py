from __future__ import annotations

from django.contrib import admin

from marketplace.models import DemoMarket, Offer


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
