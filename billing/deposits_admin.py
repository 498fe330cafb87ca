"""The crypto deposits in the admin, with the queue's two actions: assign an unmatched or
below-minimum deposit to a user (a ledger credit naming the admin), or mark it refunded. Billing
owns this admin because its actions post to the ledger (chain cannot import billing)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User
from billing.deposits import deposit_assign, deposit_mark_refunded
from chain.models import Deposit
from core import admin_tools
from core.errors import ApplicationError
from core.money import format_usd


class AssignForm(admin_tools.ReasonForm):
    email = forms.EmailField(help_text="The user to credit.")
    reason = forms.CharField(max_length=300, help_text="Recorded on the ledger transaction.")
    field_order = ["email", "reason"]

    def clean_email(self) -> User:
        user = User.objects.filter(email__iexact=self.cleaned_data["email"]).first()
        if user is None:
            raise forms.ValidationError("No user with this e-mail.")
        return user


class RefundForm(admin_tools.ReasonForm):
    reason = forms.CharField(max_length=300, help_text="How it was refunded, e.g. the refund's transaction hash.")


@admin.register(Deposit)
class DepositAdmin(admin_tools.ActionFormMixin, admin_tools.ReadOnlyAdmin):
    list_display = ("id", "chain", "status", "user", "token", "amount", "usd", "confirmations", "seen_at", "tx_hash")
    list_filter = ("status", "chain")
    search_fields = ("=tx_hash", "=account_ref", "=payer", "user__email")
    list_select_related = ("chain", "token", "user")
    ordering = ("-id",)
    actions = ("assign", "mark_refunded")

    @admin.display(description="USD (gross)", ordering="usd_micros")
    def usd(self, deposit: Deposit) -> str:
        return "" if deposit.usd_micros is None else format_usd(deposit.usd_micros, places=6)

    def has_post_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_ledgertransaction")

    @admin.action(description="Assign to a user and credit…", permissions=["post"])
    def assign(self, request: HttpRequest, queryset: QuerySet[Deposit]):
        deposits = list(queryset)
        if len(deposits) != 1:
            self.message_user(request, "Select exactly one deposit to assign.", messages.WARNING)
            return None
        form = AssignForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                data = form.cleaned_data
                txn = deposit_assign(deposit=deposits[0], user=data["email"], by=request.user, note=data["reason"])
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"{deposits[0]} credited by {txn}.", messages.SUCCESS)
                return None
        return self.action_form_page(
            request, queryset, form, action="assign", title="Assign a deposit",
            intro="Credit this deposit (its recorded USD value less the token's fee) to a user.",
            submit_label="Assign and credit",
        )  # fmt: skip

    @admin.action(description="Mark refunded…", permissions=["post"])
    def mark_refunded(self, request: HttpRequest, queryset: QuerySet[Deposit]):
        form = RefundForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            for deposit in queryset.order_by("id"):
                try:
                    deposit_mark_refunded(deposit=deposit, by=request.user, note=form.cleaned_data["reason"])
                except ApplicationError as exc:
                    self.message_user(request, f"{deposit}: {exc.message}", messages.ERROR)
                else:
                    self.message_user(request, f"{deposit} marked refunded.", messages.SUCCESS)
            return None
        return self.action_form_page(
            request, queryset, form, action="mark_refunded", title="Mark deposits refunded",
            intro="Record that these deposits were sent back on chain. Nothing is credited.",
            submit_label="Mark refunded",
        )  # fmt: skip
