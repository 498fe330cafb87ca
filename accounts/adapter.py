"""allauth hooks: where a person lands after signing up or logging in."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest
from django.urls import reverse


def _onboarding_first(request: HttpRequest) -> str | None:
    """A provider who only provides and has no provider profile yet goes on to set one up: it is
    what they signed up for. Anyone else goes where allauth's settings say."""
    user = request.user
    if user.is_authenticated and user.is_provider and not user.is_developer and not hasattr(user, "provider_profile"):
        return reverse("providers:onboarding")
    return None


class AccountAdapter(DefaultAccountAdapter):
    # allauth applies a `?next=` before it asks either method, so a link to a page still wins.
    def get_login_redirect_url(self, request: HttpRequest) -> str:
        return _onboarding_first(request) or super().get_login_redirect_url(request)

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        # Asked once the new account is logged in: with mandatory verification, after the e-mail
        # address is confirmed.
        return _onboarding_first(request) or super().get_signup_redirect_url(request)
