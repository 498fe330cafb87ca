from __future__ import annotations

from django.contrib import admin

from providers.models import GpuModel, Node, ProviderProfile, Region


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


class NodeInline(admin.TabularInline):
    model = Node
    fields = ("name", "mode", "region", "gpu_model", "gpu_count", "status", "trust_tier", "price_per_hour_micros")
    readonly_fields = fields
    extra = 0
    max_num = 0
    show_change_link = True
    can_delete = False


@admin.register(ProviderProfile)
class ProviderProfileAdmin(admin.ModelAdmin):
    list_display = ("display_name", "user", "default_region", "is_verified", "created_at")
    list_filter = ("is_verified", "default_region__continent")
    search_fields = ("display_name", "user__email", "payout_evm_address", "payout_solana_address")
    raw_id_fields = ("user",)
    readonly_fields = ("created_at", "updated_at")
    list_select_related = ("user", "default_region")


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
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
        "uptime_30d",
        "last_seen_at",
    )
    list_filter = ("mode", "status", "in_maintenance", "trust_tier", "gpu_tier", "region__continent", "gpu_model")
    search_fields = ("=id", "name", "provider__display_name", "provider__user__email")
    raw_id_fields = ("provider",)
    list_select_related = ("provider", "region", "gpu_model")
    readonly_fields = (
        "price_per_gpu_hour_micros",
        "price_per_vram_gb_micros",
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
        ("Audit", {"fields": ("created_at", "updated_at")}),
    )
