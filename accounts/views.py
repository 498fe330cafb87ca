from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.forms import RolesForm
from accounts.services import user_set_roles
from spheron_web.errors import ApplicationError


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
