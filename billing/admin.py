"""Billing admin: the ledger is browsed, never edited. Money moves only through services.

Two actions write to the ledger, each through its service and with a required reason, the admin
recorded as `created_by`: a manual adjustment of a user's available credits (`adjustment_post`)
and the reversal of a transaction (`transaction_reverse`). Both need the "add ledger
transaction" permission; replaying a Stripe event needs "change stripe event".
"""

from __future__ import annotations

import json
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from billing import (  # noqa: F401  (each registers its models' admin)
    alerts_admin,
    deposits_admin,
)
from billing.models import (
    AccountKind,
    Hold,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PayoutRequest,
    StripeEvent,
    TopUp,
    UsageMeter,
)
from billing.payouts import payout_approve, payout_reject, token_amount_text
from billing.services import adjustment_post, transaction_reverse
from billing.stripe_service import stripe_event_replay
from core import admin_tools
from core.errors import ApplicationError
from core.money import format_usd, parse_plain_decimal, usd_to_micros


def usd(micros: int | None) -> str:
    return "" if micros is None else format_usd(micros, places=6)


class ReadOnlyAdmin(admin_tools.ActionFormMixin, admin_tools.ReadOnlyAdmin):
    """Audit lists: viewing only. Corrections are new ledger transactions, never edits."""

    def has_post_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_ledgertransaction")


class ReasonForm(admin_tools.ReasonForm):
    reason = forms.CharField(max_length=300, help_text="Recorded on the ledger transaction.")


class AdjustmentForm(ReasonForm):
    # A text field parsed as a plain ASCII decimal: Django's DecimalField reads Arabic-Indic and
    # full-width digits ('٣', '３') as dollars.
    amount_usd = forms.CharField(
        label="Amount (USD)",
        max_length=24,
        help_text="Positive credits the user, negative debits their available credits (up to $1,000,000).",
    )

    field_order = ["amount_usd", "reason"]

    def clean_amount_usd(self) -> Decimal:
        amount = parse_plain_decimal(self.cleaned_data["amount_usd"])
        if amount is None:
            raise forms.ValidationError("Enter an amount in US dollars with ASCII digits, such as 25 or -10.50.")
        if amount.as_tuple().exponent < -6:  # type: ignore[operator]
            raise forms.ValidationError("At most 6 decimal places (a micro-dollar).")
        if abs(amount) > 1_000_000:
            raise forms.ValidationError("At most $1,000,000 either way.")
        if amount == 0:
            raise forms.ValidationError("An adjustment must not be zero.")
        return amount


# --- Ledger --------------------------------------------------------------------------------------
@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "user", "key", "balance_usd", "created_at")
    list_filter = ("kind",)
    search_fields = ("=id", "user__email", "key")
    list_select_related = ("user",)
    ordering = ("kind", "id")
    actions = ("adjust_available",)

    @admin.display(description="Balance", ordering="balance")
    def balance_usd(self, account: LedgerAccount) -> str:
        return usd(account.balance)

    @admin.action(description="Manual adjustment of the user's available credits…", permissions=["post"])
    def adjust_available(self, request: HttpRequest, queryset: QuerySet[LedgerAccount]):
        accounts = list(queryset.select_related("user"))
        if len(accounts) != 1 or accounts[0].kind != AccountKind.USER_AVAILABLE:
            self.message_user(
                request, "Select exactly one 'User: available credits' account to adjust.", messages.WARNING
            )
            return None
        account = accounts[0]
        form = AdjustmentForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                txn = adjustment_post(
                    user=account.user,
                    amount=usd_to_micros(form.cleaned_data["amount_usd"]),
                    memo=form.cleaned_data["reason"],
                    created_by=request.user,
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"Posted adjustment {txn} for {account.user.email}.", messages.SUCCESS)
                return None
        return self.action_form_page(
            request,
            queryset,
            form,
            action="adjust_available",
            title="Manual adjustment",
            intro=f"Adjust the available credits of {account.user.email} (now {usd(account.balance)}).",
            submit_label="Post adjustment",
        )


class LedgerEntryInline(admin_tools.ReadOnlyInline):
    model = LedgerEntry
    fields = ("account", "amount", "amount_usd")
    readonly_fields = fields

    @admin.display(description="USD")
    def amount_usd(self, entry: LedgerEntry) -> str:
        return usd(entry.amount)


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "kind", "reference_type", "reference_id", "memo", "created_by", "reverses")
    list_filter = ("kind", ("created_at", admin.DateFieldListFilter), "reference_type")
    search_fields = ("=id", "reference_id", "idempotency_key", "memo")
    list_select_related = ("created_by", "reverses")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    inlines = (LedgerEntryInline,)
    actions = ("reverse_transactions",)

    @admin.action(description="Reverse the selected transactions…", permissions=["post"])
    def reverse_transactions(self, request: HttpRequest, queryset: QuerySet[LedgerTransaction]):
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            for txn in queryset.order_by("id"):
                try:
                    reversal = transaction_reverse(txn=txn, memo=form.cleaned_data["reason"], created_by=request.user)
                except ApplicationError as exc:
                    self.message_user(request, f"{txn}: {exc.message}", messages.ERROR)
                else:
                    self.message_user(request, f"{txn} reversed by {reversal}.", messages.SUCCESS)
            return None
        return self.action_form_page(
            request,
            queryset,
            form,
            action="reverse_transactions",
            title="Reverse transactions",
            intro="Each selected transaction gets a mirror-image transaction. Refused if it would overdraw a user.",
            submit_label="Post reversals",
        )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "transaction", "account", "amount_usd")
    list_filter = ("account__kind", "transaction__kind")
    search_fields = ("=transaction__id", "account__user__email", "transaction__reference_id")
    list_select_related = ("transaction", "account", "account__user")
    ordering = ("-id",)

    @admin.display(description="Amount", ordering="amount")
    def amount_usd(self, entry: LedgerEntry) -> str:
        return usd(entry.amount)


# --- Stripe --------------------------------------------------------------------------------------
@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "status", "received_at", "processed_at", "attempts", "error_short")
    list_filter = ("status", "type")
    search_fields = ("=event_id", "error")
    date_hierarchy = "received_at"
    ordering = ("-id",)
    fields = (
        "event_id",
        "type",
        "status",
        "error",
        "attempts",
        "stripe_created",
        "received_at",
        "processed_at",
        "payload_pretty",
    )
    readonly_fields = fields
    actions = ("replay",)

    @admin.display(description="Error")
    def error_short(self, event: StripeEvent) -> str:
        return event.error[:80]

    @admin.display(description="Payload")
    def payload_pretty(self, event: StripeEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.payload, indent=2, sort_keys=True))

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_stripeevent")

    @admin.action(description="Replay the selected failed events", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        for event in queryset.order_by("id"):
            try:
                result = stripe_event_replay(event=event)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.WARNING)
                continue
            level = messages.SUCCESS if result.status != StripeEvent.Status.FAILED else messages.ERROR
            detail = f": {result.error}" if result.error else ""
            self.message_user(request, f"{result.event_id}: {result.status}{detail}", level)


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user",
        "amount_usd",
        "status",
        "stripe_payment_intent_id",
        "credit",
        "failure_message",
        "created_at",
        "updated_at",
    )
    list_filter = ("status", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "user__email", "=stripe_payment_intent_id")
    list_select_related = ("user", "credit")
    date_hierarchy = "created_at"
    ordering = ("-id",)

    @admin.display(description="Amount", ordering="amount")
    def amount_usd(self, topup: TopUp) -> str:
        return usd(topup.amount)


# --- Holds, usage, payouts -----------------------------------------------------------------------
@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user",
        "reference_type",
        "reference_id",
        "status",
        "amount_usd",
        "captured_usd",
        "released_usd",
        "created_at",
        "closed_at",
    )
    list_filter = ("status", "reference_type")
    search_fields = ("=id", "user__email", "reference_id")
    list_select_related = ("user",)
    ordering = ("-id",)

    @admin.display(description="Amount", ordering="amount")
    def amount_usd(self, hold: Hold) -> str:
        return usd(hold.amount)

    @admin.display(description="Captured", ordering="captured")
    def captured_usd(self, hold: Hold) -> str:
        return usd(hold.captured)

    @admin.display(description="Released", ordering="released")
    def released_usd(self, hold: Hold) -> str:
        return usd(hold.released)


@admin.register(UsageMeter)
class UsageMeterAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "renter",
        "payee",
        "reference_type",
        "reference_id",
        "mode",
        "price_usd",
        "fee_rate",
        "charged_usd",
        "started_at",
        "settled_at",
        "closed_at",
    )
    list_filter = ("mode", ("closed_at", admin.EmptyFieldListFilter), "reference_type")
    search_fields = ("=id", "renter__email", "payee__email", "reference_id")
    list_select_related = ("renter", "payee")
    ordering = ("-id",)

    @admin.display(description="Price / hour", ordering="price_per_hour")
    def price_usd(self, meter: UsageMeter) -> str:
        return usd(meter.price_per_hour)

    @admin.display(description="Charged", ordering="charged")
    def charged_usd(self, meter: UsageMeter) -> str:
        return usd(meter.charged)


class RejectPayoutForm(admin_tools.ReasonForm):
    reason = forms.CharField(max_length=300, help_text="Shown to the provider on the earnings page.")


@admin.register(PayoutRequest)
class PayoutRequestAdmin(ReadOnlyAdmin):
    """Payouts on chain (billing.payouts): approve the ones above the threshold, or reject one not
    sent yet with a reason. The transaction itself is the sender's (chain transactions admin)."""

    list_display = (
        "id",
        "user",
        "amount_usd",
        "chain",
        "token_paid",
        "destination",
        "state",
        "transaction_link",
        "reason",
        "created_at",
    )
    list_filter = ("status", "needs_approval", "chain")
    search_fields = ("=id", "user__email", "destination", "chain_transaction__tx_hash")
    list_select_related = ("user", "chain", "token", "chain_transaction", "approved_by", "ledger_transaction")
    ordering = ("-id",)
    actions = ("approve", "reject")

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_payoutrequest")

    @admin.display(description="Amount", ordering="amount")
    def amount_usd(self, payout: PayoutRequest) -> str:
        return usd(payout.amount)

    @admin.display(description="Token")
    def token_paid(self, payout: PayoutRequest) -> str:
        amount = token_amount_text(payout)
        if amount and payout.usd_rate is not None:
            return f"{amount} at ${payout.usd_rate.normalize():f}"
        return amount or payout.token_symbol

    @admin.display(description="Status", ordering="status")
    def state(self, payout: PayoutRequest) -> str:
        if payout.waits_for_approval:
            return "Waiting for approval"
        tx = payout.chain_transaction
        if payout.status == PayoutRequest.Status.SENDING and tx is not None:
            return f"Sending (transaction {tx.get_status_display().lower()})"
        shown = payout.get_status_display()
        if payout.approved_by_id and payout.status != PayoutRequest.Status.REJECTED:
            shown += f" (approved by {payout.approved_by.email})"
        return shown

    @admin.display(description="Transaction")
    def transaction_link(self, payout: PayoutRequest) -> str:
        tx = payout.chain_transaction
        if tx is None or not tx.tx_hash:
            return ""
        url = payout.chain.explorer_url(tx.tx_hash) if payout.chain_id else ""
        return format_html('<a href="{}">{}</a>', url, tx.tx_hash) if url else tx.tx_hash

    @admin.display(description="Reason")
    def reason(self, payout: PayoutRequest) -> str:
        return payout.failure_reason or payout.waiting_reason

    @admin.action(description="Approve the selected payouts (waiting for approval)", permissions=["approve"])
    def approve(self, request: HttpRequest, queryset: QuerySet[PayoutRequest]) -> None:
        for payout in queryset.order_by("id"):
            try:
                payout_approve(payout=payout, admin=request.user)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.WARNING)
            else:
                self.message_user(
                    request, f"Payout #{payout.pk} approved: it is sent on the next pass.", messages.SUCCESS
                )

    @admin.action(description="Reject the selected payouts (not sent yet)…", permissions=["approve"])
    def reject(self, request: HttpRequest, queryset: QuerySet[PayoutRequest]):
        form = RejectPayoutForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            for payout in queryset.order_by("id"):
                try:
                    payout_reject(payout=payout, admin=request.user, reason=form.cleaned_data["reason"])
                except ApplicationError as exc:
                    self.message_user(request, exc.message, messages.WARNING)
                else:
                    self.message_user(
                        request, f"Payout #{payout.pk} rejected: its amount is payable again.", messages.SUCCESS
                    )
            return None
        return self.action_form_page(
            request,
            queryset,
            form,
            action="reject",
            title="Reject payouts",
            intro="The selected payouts are not paid; their amounts become payable again. The reason is shown to "
            "the provider.",
            submit_label="Reject",
        )
