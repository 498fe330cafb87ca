from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.api_keys import api_key_create, api_key_list, api_key_revoke
from accounts.auth import rate_limits
from accounts.forms import ApiKeyCreateForm, RolesForm
from accounts.services import user_set_roles
from core.errors import ApplicationError
from core.money import format_usd


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
def _api_keys_page(request: HttpRequest, form: ApiKeyCreateForm, new_key: str | None = None) -> HttpResponse:
    keys = list(api_key_list(user=request.user))  # type: ignore[arg-type]
    for key in keys:
        key.cap_shown = format_usd(key.daily_spend_cap, places=2) if key.daily_spend_cap else None  # type: ignore[attr-defined]
        key.spent_shown = format_usd(key.spent_today, places=2)  # type: ignore[attr-defined]
    context = {"form": form, "api_keys": keys, "new_key": new_key, "rates": rate_limits()}
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
            api_key, raw_key = api_key_create(
                user=request.user,  # type: ignore[arg-type]
                label=form.cleaned_data["label"],
                scopes=form.cleaned_data["scopes_value"],
                daily_spend_cap=form.cleaned_data["daily_spend_cap_value"],
                allowed_networks=form.cleaned_data["allowed_networks_value"],
            )
        except ApplicationError as exc:
            field = exc.extra.get("field")
            form.add_error(field if field in form.fields else None, exc.message)
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
