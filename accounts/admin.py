from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from accounts.api_keys import api_keys_revoke
from accounts.models import ApiKey, ApiKeySpend, User, WalletLink
from core.money import format_usd


class SpheronUserCreationForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class SpheronUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = SpheronUserChangeForm
    add_form = SpheronUserCreationForm
    list_display = (
        "email",
        "name",
        "is_developer",
        "is_provider",
        "is_staff",
        "is_active",
        "date_joined",
        "last_login",
    )
    list_filter = ("is_developer", "is_provider", "is_staff", "is_superuser", "is_active")
    search_fields = ("email", "name")
    ordering = ("email",)
    readonly_fields = ("date_joined", "last_login")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name", "is_developer", "is_provider")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Audit", {"fields": ("date_joined", "last_login")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(WalletLink)
class WalletLinkAdmin(admin.ModelAdmin):
    """Read-only: a link is made only by a signature (accounts.wallets.wallet_link)."""

    list_display = ("user", "purpose", "address", "chain_id", "linked_at", "revoked_at")
    list_filter = ("purpose", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("user__email", "address")
    list_select_related = ("user",)
    readonly_fields = ("user", "address", "purpose", "chain_id", "message", "signature", "linked_at", "revoked_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ApiKeySpendInline(admin.TabularInline):
    model = ApiKeySpend
    fields = ("day", "amount")
    readonly_fields = ("day", "amount")
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-day",)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Read-only (a key's owner makes it on the API keys page); staff may revoke keys, which stop
    working at the next request."""

    list_display = ("prefix", "label", "user", "scopes", "daily_cap", "allowed_networks", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("user__email", "label", "prefix")
    list_select_related = ("user",)
    readonly_fields = (
        "user",
        "label",
        "prefix",
        "scopes",
        "daily_spend_cap",
        "allowed_networks",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    exclude = ("key_hash",)
    inlines = [ApiKeySpendInline]
    actions = ["revoke"]

    @admin.display(description="daily cap")
    def daily_cap(self, obj: ApiKey) -> str:
        return format_usd(obj.daily_spend_cap, places=2) if obj.daily_spend_cap else "—"

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset) -> None:
        revoked = api_keys_revoke(key_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{revoked} key(s) revoked.", messages.SUCCESS)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
