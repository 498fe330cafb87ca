from __future__ import annotations

from django import forms

from accounts.models import User
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
