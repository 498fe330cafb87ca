"""The registry (chains, tokens, rates) is edited here; cursors and references are looked at.
Deposits are billing's admin (billing/deposits_admin.py): its actions credit the ledger."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from chain.evm.client import ChainUnavailable
from chain.models import (
    Chain,
    ChainToken,
    ChainTransaction,
    DepositReference,
    Rate,
    SenderNonce,
    TxStatus,
    WatchCursor,
)
from chain.sender import RpcError, transaction_resend
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


@admin.register(ChainTransaction)
class ChainTransactionAdmin(admin_tools.ReadOnlyAdmin):
    """What the sender sent, read-only; stuck ones come first, in red. "Re-send now" re-signs with
    the same nonce and higher fees (or sends a recorded one)."""

    list_display = (
        "id", "status_shown", "purpose", "reference", "chain", "nonce", "attempts", "tx_hash", "sent_at",
        "revert_reason", "error",
    )  # fmt: skip
    list_filter = ("status", "purpose", "chain")
    search_fields = ("=reference", "=tx_hash", "=sender", "=to")
    list_select_related = ("chain",)
    actions = ("resend_now",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChainTransaction]:
        from django.db.models import Case, IntegerField, Value, When

        stuck_first = Case(When(status=TxStatus.STUCK, then=Value(0)), default=Value(1), output_field=IntegerField())
        return super().get_queryset(request).order_by(stuck_first, "-id")

    @admin.display(description="status", ordering="status")
    def status_shown(self, tx: ChainTransaction):
        if tx.status == TxStatus.STUCK:
            return format_html('<strong style="color:#b00">{}</strong>', tx.get_status_display())
        return tx.get_status_display()

    def has_resend_permission(self, request: HttpRequest) -> bool:
        # The list is read-only for everyone; signing and broadcasting needs the model's change right.
        return request.user.has_perm("chain.change_chaintransaction")

    @admin.action(description="Re-send now (same nonce, higher fees)", permissions=["resend"])
    def resend_now(self, request: HttpRequest, queryset: QuerySet[ChainTransaction]) -> None:
        for tx in queryset.order_by("id"):
            try:
                after = transaction_resend(tx_id=tx.pk)
            except (ChainUnavailable, RpcError, ImproperlyConfigured) as exc:
                self.message_user(request, f"{tx}: {exc}", messages.ERROR)
            else:
                level = messages.WARNING if after.error else messages.SUCCESS
                shown = f" ({after.error})" if after.error else ""
                self.message_user(request, f"{after}: {after.tx_hash or 'not sent'}{shown}", level)


@admin.register(SenderNonce)
class SenderNonceAdmin(admin_tools.ReadOnlyAdmin):
    list_display = ("address", "chain", "next_nonce", "updated_at")
    list_filter = ("chain",)
