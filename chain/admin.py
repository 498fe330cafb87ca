"""The registry (chains, tokens, rates) is edited here; cursors and references are looked at.
Deposits are billing's admin (billing/deposits_admin.py): its actions credit the ledger."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from chain.models import Chain, ChainToken, DepositReference, Rate, WatchCursor
from core import admin_tools


class ChainTokenInline(admin.TabularInline):
    model = ChainToken
    extra = 0
    fields = ("symbol", "address", "decimals", "fee_bps", "enabled")


@admin.register(Chain)
class ChainAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "chain_id", "kind", "finality", "min_deposit_usd_micros", "enabled")
    list_filter = ("kind", "enabled")
    ordering = ("id",)
    inlines = (ChainTokenInline,)


@admin.register(Rate)
class RateAdmin(admin.ModelAdmin):
    list_display = ("symbol", "usd_per_unit", "at", "source", "created_by")
    list_filter = ("symbol", "source")
    ordering = ("symbol", "-at")
    exclude = ("created_by",)

    def save_model(self, request: HttpRequest, obj: Rate, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(WatchCursor)
class WatchCursorAdmin(admin.ModelAdmin):
    # Editable on purpose: set last_block to the block before the receiver's deployment to read
    # every deposit since (a new cursor reads only the last CHAIN_SCAN_MAX_BLOCKS).
    list_display = ("chain", "last_block", "updated_at")


@admin.register(DepositReference)
class DepositReferenceAdmin(admin_tools.ReadOnlyAdmin):
    list_display = ("ref", "user", "created_at")
    search_fields = ("=ref", "user__email")
    list_select_related = ("user",)
