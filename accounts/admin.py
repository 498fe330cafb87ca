from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from accounts.models import User, WalletLink


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
