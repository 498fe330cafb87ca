from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.api_keys import LABEL_MAX_LENGTH, api_key_create, api_key_list, api_key_revoke
from accounts.forms import RolesForm
from accounts.services import user_set_roles
from core.errors import ApplicationError


@login_required
def account_settings(request: HttpRequest) -> HttpResponse:
    user = request.user
    if request.method == "POST":
        form = RolesForm(request.POST)
        if form.is_valid():
            try:
                user_set_roles(
                    user=user,  # type: ignore[arg-type]
                    is_developer=form.cleaned_data["is_developer"],
                    is_provider=form.cleaned_data["is_provider"],
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Your roles were saved.")
                return redirect("account_settings")
    else:
        form = RolesForm(initial={"is_developer": user.is_developer, "is_provider": user.is_provider})
    return render(request, "accounts/settings.html", {"form": form})


# --- API keys ------------------------------------------------------------------------------
class ApiKeyCreateForm(forms.Form):
    label = forms.CharField(
        max_length=LABEL_MAX_LENGTH,
        help_text="Where the key is used, e.g. “CI deploys” or “laptop”.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "CI deploys"}),
    )


def _api_keys_page(request: HttpRequest, form: ApiKeyCreateForm, new_key: str | None = None) -> HttpResponse:
    context = {"form": form, "api_keys": api_key_list(user=request.user), "new_key": new_key}  # type: ignore[arg-type]
    response = render(request, "accounts/api_keys.html", context)
    if new_key:
        response["Cache-Control"] = "no-store"
    return response


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _api_keys_page(request, ApiKeyCreateForm())
    form = ApiKeyCreateForm(request.POST)
    if form.is_valid():
        try:
            api_key, raw_key = api_key_create(user=request.user, label=form.cleaned_data["label"])  # type: ignore[arg-type]
        except ApplicationError as exc:
            form.add_error("label" if exc.extra.get("field") == "label" else None, exc.message)
        else:
            # Shown in this response only, never stored (so no redirect: the key has nowhere to wait).
            messages.success(request, f"API key “{api_key.label}” created. Copy it now: it will not be shown again.")
            return _api_keys_page(request, ApiKeyCreateForm(), new_key=raw_key)
    return _api_keys_page(request, form)


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key = api_key_revoke(user=request.user, key_id=key_id)  # type: ignore[arg-type]
    messages.success(request, f"API key “{api_key.label}” ({api_key.prefix}…) is revoked.")
    return redirect("account_api_keys")
