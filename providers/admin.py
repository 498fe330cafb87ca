from __future__ import annotations

import json
import re
import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin_tools import ReadOnlyAdmin
from core.errors import ApplicationError
from core.money import format_usd
from providers.earnings import spon_text
from providers.models import (
    GpuModel,
    Node,
    NodeChallenge,
    NodeEra,
    NodeEvent,
    NodeOutage,
    NodeReward,
    NodeToken,
    ProviderGpuPrice,
    ProviderProfile,
    Region,
    RewardEra,
    Slash,
    SlashAppeal,
    SlashStatus,
    StakeEvent,
    StakeEventKind,
)
from providers.services import (
    ADMIN_STAKE_KINDS,
    SPON_DECIMALS,
    node_admin_save,
    node_review_clear,
    node_token_revoke,
    stake_record,
)
from providers.slashing import appeal_decide, slash_decide


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


class _DryRun(Exception):
    pass


class StakeEventForm(forms.ModelForm):
    """Adds a stake change through stake_record: the amount is typed in $SPON, not base units."""

    amount_spon = forms.CharField(label="Amount ($SPON)", help_text="Whole $SPON, up to 18 decimals, e.g. 200")

    class Meta:
        model = StakeEvent
        fields = ("provider", "kind", "reason")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "kind" in self.fields:  # a withdrawal happens on chain only
            self.fields["kind"].choices = [(k.value, k.label) for k in ADMIN_STAKE_KINDS]

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk or self.errors:
            return cleaned
        # Run the real service and roll it back, so the form shows exactly the errors it would raise
        # (bad amount, more than staked, slash without a reason) instead of a server error on save.
        try:
            with transaction.atomic():
                stake_record(
                    provider=cleaned["provider"],
                    kind=cleaned["kind"],
                    amount=cleaned.get("amount_spon") or "",
                    reason=cleaned.get("reason") or "",
                )
                raise _DryRun
        except _DryRun:
            pass
        except ApplicationError as exc:
            field = {"amount": "amount_spon"}.get(exc.extra.get("field", ""), exc.extra.get("field"))
            self.add_error(field if field in self.fields else None, exc.message)
        return cleaned


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
        return f"{sign}{obj.amount / 10**SPON_DECIMALS:,f}"

    @admin.display(description="Balance after ($SPON)")
    def balance_display(self, obj: StakeEvent) -> str:
        return f"{obj.balance_after / 10**SPON_DECIMALS:,f}"

    def save_model(self, request: HttpRequest, obj: StakeEvent, form, change: bool) -> None:
        if change:
            return
        # stake_record writes the event and the provider's balance together; the admin then logs
        # and links to `obj`, so it becomes the row the service wrote.
        event = stake_record(
            provider=form.cleaned_data["provider"],
            kind=form.cleaned_data["kind"],
            amount=form.cleaned_data["amount_spon"],
            reason=form.cleaned_data.get("reason") or "",
            by=request.user,  # type: ignore[arg-type]
        )
        for field in StakeEvent._meta.concrete_fields:
            setattr(obj, field.attname, getattr(event, field.attname))
        obj._state.adding = False


ADMIN_REFERENCE = re.compile(r"admin:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)


class SlashDecideForm(forms.ModelForm):
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

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk or self.errors:
            return cleaned
        # Run the real service and roll it back, so the form shows exactly the errors it would
        # raise (bad amount, no reason, nothing to slash) instead of a server error on save.
        try:
            with transaction.atomic():
                slash = slash_decide(
                    provider=cleaned["provider"],
                    amount_spon=cleaned.get("amount_spon") or "",
                    reason=cleaned.get("reason") or "",
                    reference=cleaned["decision_reference"],
                    evidence_type=cleaned.get("evidence_type") or "",
                    evidence_id=cleaned.get("evidence_id") or "",
                )
                raise _DryRun(slash.failure_reason if slash.status == SlashStatus.FAILED else "")
        except _DryRun as outcome:
            if outcome.args[0]:
                self.add_error(None, outcome.args[0])
        except ApplicationError as exc:
            field = {"amount": "amount_spon"}.get(exc.extra.get("field", ""), exc.extra.get("field"))
            self.add_error(field if field in self.fields else None, exc.message)
        return cleaned


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
        return f"{obj.amount / 10**SPON_DECIMALS:,f}"

    @admin.display(description="Slashed ($SPON)")
    def slashed_display(self, obj: Slash) -> str:
        return "—" if obj.amount_slashed is None else f"{obj.amount_slashed / 10**SPON_DECIMALS:,f}"

    @admin.display(description="Evidence")
    def evidence(self, obj: Slash) -> str:
        return f"{obj.evidence_type} {obj.evidence_id}".strip() or "—"

    @admin.display(description="Appeal")
    def appeal_link(self, obj: Slash) -> str:
        appeal = getattr(obj, "appeal", None)
        if appeal is None:
            return "—"
        url = reverse("admin:providers_slashappeal_change", args=[appeal.id])
        return format_html('<a href="{}">{}</a>', url, appeal.get_status_display())

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
        # The admin then logs and links to `obj`: it becomes the row the service wrote.
        for field in Slash._meta.concrete_fields:
            setattr(obj, field.attname, getattr(slash, field.attname))
        obj._state.adding = False
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
        url = reverse("admin:providers_slash_change", args=[obj.slash_id])
        return format_html('<a href="{}">#{} {}</a>', url, obj.slash_id, obj.slash.reference)

    @admin.display(description="Provider")
    def provider(self, obj: SlashAppeal) -> str:
        return str(obj.slash.provider)

    @admin.display(description="Slashed ($SPON)")
    def slashed_display(self, obj: SlashAppeal) -> str:
        slash = obj.slash
        return "—" if slash.amount_slashed is None else f"{slash.amount_slashed / 10**SPON_DECIMALS:,f}"

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


# --- Era rewards ---------------------------------------------------------------------------------

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

    @admin.display(description="$SPON issued")
    def spon_display(self, obj: RewardEra) -> str:
        return spon_text(obj.spon)

    @admin.display(description="Emission ($SPON)")
    def emission_display(self, obj: RewardEra) -> str:
        return spon_text(obj.emission)

    @admin.display(description="Floor budget")
    def floor_budget_display(self, obj: RewardEra) -> str:
        return format_usd(obj.floor_budget_micros, 6)

    @admin.display(description="Floor wanted")
    def floor_wanted_display(self, obj: RewardEra) -> str:
        return format_usd(obj.floor_wanted_micros, 6)

    @admin.display(description="Floor paid")
    def floor_paid_display(self, obj: RewardEra) -> str:
        return format_usd(obj.floor_paid_micros, 6)

    @admin.display(description="Pool left")
    def pool_left_display(self, obj: RewardEra) -> str:
        return format_usd(obj.floor_pool_left_micros, 6)

    @admin.display(description="Parameters")
    def params_pretty(self, obj: RewardEra) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.params, indent=2, sort_keys=True, default=str))

    @admin.display(description="Receipts")
    def rewards_link(self, obj: RewardEra) -> str:
        url = reverse("admin:providers_nodereward_changelist") + f"?era__id__exact={obj.id}"
        return format_html('<a href="{}">{} node rewards</a>', url, obj.nodes)

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

    @admin.display(description="$SPON")
    def spon_display(self, obj: NodeReward) -> str:
        return spon_text(obj.spon)

    @admin.display(description="USD at the era's rate")
    def usd_display(self, obj: NodeReward) -> str:
        return format_usd(obj.spon_usd_micros, 6)

    @admin.display(description="Rental")
    def rental_display(self, obj: NodeReward) -> str:
        return format_usd(obj.rental_micros, 6)

    @admin.display(description="Floor")
    def floor_display(self, obj: NodeReward) -> str:
        return format_usd(obj.floor_micros, 6)

    @admin.display(description="Floor wanted")
    def wanted_display(self, obj: NodeReward) -> str:
        return format_usd(obj.floor_wanted_micros, 6)

    @admin.display(description="Floor top-up")
    def topup_display(self, obj: NodeReward) -> str:
        return format_usd(obj.floor_topup_micros, 6)

    @admin.display(description="Receipt")
    def receipt_pretty(self, obj: NodeReward) -> str:
        text = json.dumps(obj.receipt, indent=2, ensure_ascii=False)
        return format_html('<pre data-testid="receipt-json">{}</pre>', text)
