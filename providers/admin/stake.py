"""The admin of stake: the stake history (an admin records stake changes agreed off chain), slashes
(decided here through slash_decide) and providers' appeals of them (upheld or dismissed here)."""

from __future__ import annotations

import re
import uuid

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Model
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from core import admin_tools
from core.errors import ApplicationError
from providers.models import Slash, SlashAppeal, SlashStatus, StakeEvent, StakeEventKind
from providers.services import ADMIN_STAKE_KINDS, SPON_DECIMALS, stake_record
from providers.slashing import appeal_decide, slash_decide


def _spon(base_units: int) -> str:
    """Base units as $SPON, for the columns."""
    return f"{base_units / 10**SPON_DECIMALS:,f}"


def _slashed(slash: Slash) -> str:
    return "—" if slash.amount_slashed is None else _spon(slash.amount_slashed)


def _adopt(obj: Model, row: Model) -> None:
    """`obj`, the admin's unsaved row, becomes `row`, the one the service wrote: the admin then logs
    and links to `obj`."""
    for field in type(row)._meta.concrete_fields:
        setattr(obj, field.attname, getattr(row, field.attname))
    obj._state.adding = False


class _DryRun(Exception):
    pass


class DryRunAddForm(forms.ModelForm):
    """An add form whose save calls a service: `clean` runs the real service (`dry_run`) and rolls it
    back, so the form shows exactly the errors it would raise instead of a server error on save. An
    error about the service's "amount" is shown on the form's `amount_spon`."""

    def dry_run(self, cleaned: dict) -> str:
        """Call the service with the cleaned data; return a refusal to show ("" when none)."""
        raise NotImplementedError

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk or self.errors:
            return cleaned
        try:
            with transaction.atomic():
                raise _DryRun(self.dry_run(cleaned))
        except _DryRun as outcome:
            if outcome.args[0]:
                self.add_error(None, outcome.args[0])
        except ApplicationError as exc:
            field = {"amount": "amount_spon"}.get(exc.extra.get("field", ""), exc.extra.get("field"))
            self.add_error(field if field in self.fields else None, exc.message)
        return cleaned


class StakeEventForm(DryRunAddForm):
    """Adds a stake change through stake_record: the amount is typed in $SPON, not base units."""

    amount_spon = forms.CharField(label="Amount ($SPON)", help_text="Whole $SPON, up to 18 decimals, e.g. 200")

    class Meta:
        model = StakeEvent
        fields = ("provider", "kind", "reason")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "kind" in self.fields:  # a withdrawal happens on chain only
            self.fields["kind"].choices = [(k.value, k.label) for k in ADMIN_STAKE_KINDS]

    def dry_run(self, cleaned: dict) -> str:
        # Its errors: a bad amount, more than staked, a slash without a reason.
        stake_record(
            provider=cleaned["provider"],
            kind=cleaned["kind"],
            amount=cleaned.get("amount_spon") or "",
            reason=cleaned.get("reason") or "",
        )
        return ""


@admin.register(StakeEvent)
class StakeEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "provider", "kind", "amount_display", "balance_display", "reason", "created_by")
    list_filter = ("kind",)
    search_fields = ("provider__display_name", "provider__user__email", "reason")
    list_select_related = ("provider", "created_by")
    raw_id_fields = ("provider",)
    date_hierarchy = "created_at"
    form = StakeEventForm
    readonly_fields = ("amount", "balance_after", "created_at", "created_by")

    def get_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return ("provider", "kind", "amount_spon", "reason")
        return ("provider", "kind", "amount", "balance_after", "reason", "created_at", "created_by")

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return ()
        return ("provider", "kind", "amount", "balance_after", "reason", "created_at", "created_by")

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the history is the audit trail; correct with an opposite event

    @admin.display(description="Amount ($SPON)")
    def amount_display(self, obj: StakeEvent) -> str:
        sign = "+" if obj.kind == StakeEventKind.STAKE else "−"
        return f"{sign}{_spon(obj.amount)}"

    @admin.display(description="Balance after ($SPON)")
    def balance_display(self, obj: StakeEvent) -> str:
        return _spon(obj.balance_after)

    def save_model(self, request: HttpRequest, obj: StakeEvent, form, change: bool) -> None:
        if change:
            return
        # stake_record writes the event and the provider's balance together.
        event = stake_record(
            provider=form.cleaned_data["provider"],
            kind=form.cleaned_data["kind"],
            amount=form.cleaned_data["amount_spon"],
            reason=form.cleaned_data.get("reason") or "",
            by=request.user,  # type: ignore[arg-type]
        )
        _adopt(obj, event)


ADMIN_REFERENCE = re.compile(r"admin:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)


class SlashDecideForm(DryRunAddForm):
    """Decides a slash through slash_decide: the amount in $SPON; the reference ("admin:<uuid4>") is
    made when the form is shown, so submitting the same form twice decides one slash."""

    amount_spon = forms.CharField(label="Amount ($SPON)", help_text="Whole $SPON, up to 18 decimals, e.g. 50")
    decision_reference = forms.CharField(widget=forms.HiddenInput)

    class Meta:
        model = Slash
        fields = ("provider", "reason", "evidence_type", "evidence_id")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "decision_reference" in self.fields:
            self.fields["decision_reference"].initial = f"admin:{uuid.uuid4()}"

    def clean_decision_reference(self) -> str:
        reference = self.cleaned_data.get("decision_reference", "")
        if not ADMIN_REFERENCE.fullmatch(reference):
            raise forms.ValidationError("Open the form again (its reference is not one it made).")
        return reference

    def dry_run(self, cleaned: dict) -> str:
        # Its errors: a bad amount, no reason, nothing to slash (a failed slash: its reason).
        slash = slash_decide(
            provider=cleaned["provider"],
            amount_spon=cleaned.get("amount_spon") or "",
            reason=cleaned.get("reason") or "",
            reference=cleaned["decision_reference"],
            evidence_type=cleaned.get("evidence_type") or "",
            evidence_id=cleaned.get("evidence_id") or "",
        )
        return slash.failure_reason if slash.status == SlashStatus.FAILED else ""


@admin.register(Slash)
class SlashAdmin(admin.ModelAdmin):
    """Slashes are looked at, not edited; "Add" decides a new one (slash_decide)."""

    list_display = (
        "created_at",
        "provider",
        "amount_display",
        "slashed_display",
        "status",
        "reason",
        "evidence",
        "tx_link",
        "appeal_link",
    )
    list_filter = ("status", "evidence_type")
    search_fields = ("=reference", "provider__display_name", "provider__user__email", "reason", "chain_tx__tx_hash")
    list_select_related = ("provider", "chain_tx__chain", "appeal")
    raw_id_fields = ("provider",)
    date_hierarchy = "created_at"
    form = SlashDecideForm
    show_full_result_count = False
    shown = (
        "provider",
        "reference",
        "amount",
        "amount_slashed",
        "status",
        "reason",
        "reason_hash",
        "evidence_type",
        "evidence_id",
        "address",
        "tx_link",
        "chain_tx",
        "stake_event",
        "failure_reason",
        "created_at",
        "applied_at",
        "decided_by",
        "appeal_link",
    )

    def get_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return ("provider", "amount_spon", "reason", "evidence_type", "evidence_id", "decision_reference")
        return self.shown

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return () if obj is None else self.shown

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the record of what was decided and sent

    @admin.display(description="Decided ($SPON)")
    def amount_display(self, obj: Slash) -> str:
        return _spon(obj.amount)

    @admin.display(description="Slashed ($SPON)")
    def slashed_display(self, obj: Slash) -> str:
        return _slashed(obj)

    @admin.display(description="Evidence")
    def evidence(self, obj: Slash) -> str:
        return f"{obj.evidence_type} {obj.evidence_id}".strip() or "—"

    @admin.display(description="Appeal")
    def appeal_link(self, obj: Slash) -> str:
        appeal = getattr(obj, "appeal", None)
        return admin_tools.change_link(appeal, appeal.get_status_display()) if appeal else "—"

    @admin.display(description="Transaction")
    def tx_link(self, obj: Slash) -> str:
        tx = obj.chain_tx
        if tx is None:
            return "—"
        if not tx.tx_hash:
            return f"{tx.get_status_display()} (not signed yet)"
        url = tx.chain.explorer_url(tx.tx_hash)
        if url:
            return format_html('<a href="{}" rel="noopener">{}</a> ({})', url, tx.tx_hash, tx.get_status_display())
        return format_html("<code>{}</code> ({})", tx.tx_hash, tx.get_status_display())

    def save_model(self, request: HttpRequest, obj: Slash, form, change: bool) -> None:
        if change:
            return
        slash = slash_decide(
            provider=form.cleaned_data["provider"],
            amount_spon=form.cleaned_data["amount_spon"],
            reason=form.cleaned_data["reason"],
            reference=form.cleaned_data["decision_reference"],
            evidence_type=form.cleaned_data.get("evidence_type") or "",
            evidence_id=form.cleaned_data.get("evidence_id") or "",
            decided_by=request.user,  # type: ignore[arg-type]
        )
        _adopt(obj, slash)
        if slash.status == SlashStatus.DECIDED:
            self.message_user(
                request,
                f"Slash decided on chain for {slash.address}: the slasher key sends it on the next pass; "
                "it is applied once its Slashed event is final.",
                messages.SUCCESS,
            )
        elif slash.status == SlashStatus.OFF_CHAIN:
            self.message_user(request, "Slash applied to the admin-recorded stake.", messages.SUCCESS)


class AppealAnswerForm(forms.Form):
    answer = forms.CharField(
        label="Answer to the provider",
        widget=forms.Textarea(attrs={"rows": 5, "cols": 80}),
        max_length=2000,
        help_text="Required: the provider reads it on the stake page.",
    )


@admin.register(SlashAppeal)
class SlashAppealAdmin(admin.ModelAdmin):
    """Providers' appeals of their slashes. Select open ones and "Uphold" (return what was slashed:
    a $SPON transfer from the treasury on chain, a stake event off chain) or "Dismiss"; both ask for
    the answer the provider reads."""

    list_display = (
        "created_at",
        "slash_link",
        "provider",
        "slashed_display",
        "status",
        "text_short",
        "evidence",
        "refund_display",
    )
    list_filter = ("status", "refund_status", "slash__evidence_type")
    search_fields = ("=slash__reference", "slash__provider__display_name", "slash__provider__user__email", "text")
    list_select_related = ("slash__provider", "refund_tx__chain")
    actions = ("uphold", "dismiss")
    show_full_result_count = False
    fields = (
        "slash_link",
        "provider",
        "slashed_display",
        "slash_reason",
        "evidence",
        "text",
        "status",
        "answer",
        "decided_by",
        "decided_at",
        "refund_display",
        "refund_note",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # providers write appeals, from the stake page

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Slash")
    def slash_link(self, obj: SlashAppeal) -> str:
        return admin_tools.change_link(obj.slash, f"#{obj.slash_id} {obj.slash.reference}")

    @admin.display(description="Provider")
    def provider(self, obj: SlashAppeal) -> str:
        return str(obj.slash.provider)

    @admin.display(description="Slashed ($SPON)")
    def slashed_display(self, obj: SlashAppeal) -> str:
        return _slashed(obj.slash)

    @admin.display(description="Reason of the slash")
    def slash_reason(self, obj: SlashAppeal) -> str:
        return obj.slash.reason

    @admin.display(description="Evidence")
    def evidence(self, obj: SlashAppeal) -> str:
        slash = obj.slash
        text = f"{slash.evidence_type} {slash.evidence_id}".strip() or "—"
        if slash.evidence_type == "challenge":
            url = reverse("admin:providers_nodechallenge_changelist") + f"?q={slash.evidence_id}"
            return format_html('<a href="{}">{}</a>', url, text)
        if slash.node_id:
            url = reverse("admin:providers_node_change", args=[slash.node_id])
            return format_html('{} (<a href="{}">node {}</a>)', text, url, slash.node_id)
        return text

    @admin.display(description="Appeal")
    def text_short(self, obj: SlashAppeal) -> str:
        return obj.text if len(obj.text) <= 120 else obj.text[:119] + "…"

    @admin.display(description="Refund")
    def refund_display(self, obj: SlashAppeal) -> str:
        if not obj.refund_status:
            return "—"
        label = obj.get_refund_status_display()
        tx = obj.refund_tx
        if tx is not None and tx.tx_hash:
            url = tx.chain.explorer_url(tx.tx_hash)
            if url:
                return format_html('{}: <a href="{}" rel="noopener">{}</a>', label, url, tx.tx_hash)
            return format_html("{}: <code>{}</code>", label, tx.tx_hash)
        return f"{label}. {obj.refund_note}".strip()

    def _decide(self, request: HttpRequest, queryset, *, uphold: bool, verb: str):
        form = AppealAnswerForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            done, refused = 0, []
            for appeal_id in queryset.order_by("id").values_list("id", flat=True):
                try:
                    appeal_decide(
                        appeal_id=appeal_id,
                        uphold=uphold,
                        answer=form.cleaned_data["answer"],
                        by=request.user,  # type: ignore[arg-type]
                    )
                    done += 1
                except ApplicationError as exc:
                    refused.append(exc.message)
            if done:
                self.message_user(request, f"{verb} {done} appeal{'' if done == 1 else 's'}.", messages.SUCCESS)
            for message in refused:
                self.message_user(request, message, messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb[:-2] if verb.endswith('ed') else verb} appeals",
            "verb": "Uphold" if uphold else "Dismiss",
            "action": "uphold" if uphold else "dismiss",
            "appeals": list(queryset.select_related("slash__provider")),
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/providers/slashappeal/decide.html", context)

    @admin.action(description="Uphold the selected appeals (return what was slashed)…")
    def uphold(self, request: HttpRequest, queryset):
        return self._decide(request, queryset, uphold=True, verb="Upheld")

    @admin.action(description="Dismiss the selected appeals…")
    def dismiss(self, request: HttpRequest, queryset):
        return self._decide(request, queryset, uphold=False, verb="Dismissed")
