from __future__ import annotations

from django import forms

from accounts.api_keys import (
    LABEL_MAX_LENGTH,
    MAX_ALLOWED_NETWORKS,
    allowed_networks_parse,
    daily_spend_cap_parse,
    scopes_clean,
)
from accounts.models import ApiKeyScope, User
from accounts.services import user_set_roles
from core.errors import ApplicationError


class RolesForm(forms.Form):
    is_developer = forms.BooleanField(
        required=False, initial=True, label="Developer", help_text="I want to rent GPUs and CPUs."
    )
    is_provider = forms.BooleanField(
        required=False, label="Provider", help_text="I want to rent out my machines and earn."
    )

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("is_developer") or cleaned.get("is_provider")):
            raise forms.ValidationError("Choose at least one role: developer, provider, or both.")
        return cleaned


class RolesSignupForm(RolesForm):
    """Extra fields on allauth's sign-up form (ACCOUNT_SIGNUP_FORM_CLASS)."""

    def signup(self, request, user: User) -> None:
        try:
            user_set_roles(
                user=user,
                is_developer=self.cleaned_data["is_developer"],
                is_provider=self.cleaned_data["is_provider"],
            )
        except ApplicationError as exc:  # clean() already checks; keep one source of the rule
            raise forms.ValidationError(exc.message) from exc


# --- API keys ------------------------------------------------------------------------------
class ApiKeyCreateForm(forms.Form):
    """A new key: label, what it may do, and its optional limits. Cleaned through accounts.api_keys,
    so the page and any other caller share one set of rules."""

    ACCESS_CHOICES = [
        ("full", "Full: everything your account can do"),
        ("read", "Read only"),
        ("custom", "Only the scopes ticked below"),
    ]
    SCOPE_CHOICES = [
        (ApiKeyScope.READ.value, "read — look at anything (GET requests)"),
        (ApiKeyScope.DEPLOY.value, "deploy — create, validate, close and re-deploy deployments"),
        (ApiKeyScope.BILLING.value, "billing — top-ups, deposit checks, low-balance alerts and auto-reload"),
        (ApiKeyScope.PROVIDER.value, "provider — node tokens, maintenance, prices, payouts and slash appeals"),
    ]

    label = forms.CharField(
        max_length=LABEL_MAX_LENGTH,
        help_text="Where the key is used, e.g. “CI deploys” or “laptop”.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "CI deploys"}),
    )
    # A form sent without a choice (a script posting only a label) gets full access, as keys always had.
    access = forms.ChoiceField(
        choices=ACCESS_CHOICES, required=False, initial="full", widget=forms.RadioSelect, label="Access"
    )
    scopes = forms.MultipleChoiceField(
        choices=SCOPE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="deploy, billing and provider also read their own area.",
    )
    daily_spend_cap = forms.CharField(
        required=False,
        max_length=20,
        label="Daily spend cap (USD)",
        help_text="The most the deployments this key starts may hold per UTC day. Empty: no cap.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "placeholder": "50.00"}),
    )
    allowed_networks = forms.CharField(
        required=False,
        max_length=2000,
        label="Allowed addresses",
        help_text=f"IP addresses or CIDR networks the key works from, separated by commas or lines "
        f"(at most {MAX_ALLOWED_NETWORKS}). Empty: any address.",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "203.0.113.7, 198.51.100.0/24"}),
    )

    def clean(self):
        cleaned = super().clean()
        access = cleaned.get("access") or "full"
        chosen = {"full": ["full"], "read": ["read"]}.get(access, cleaned.get("scopes") or [])
        for field, parse in (
            ("scopes", lambda: scopes_clean(chosen)),
            ("daily_spend_cap", lambda: daily_spend_cap_parse(cleaned.get("daily_spend_cap"))),
            ("allowed_networks", lambda: allowed_networks_parse(cleaned.get("allowed_networks") or "")),
        ):
            try:
                cleaned[f"{field}_value"] = parse()
            except ApplicationError as exc:
                self.add_error(field, exc.message)
        return cleaned
