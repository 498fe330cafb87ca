from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from accounts.models import User
from tests.factories import make_node, make_provider, make_user

PASSWORD = "correct-horse-battery-staple"


def verified_user(email: str = "dev@example.test", **fields) -> User:
    user = make_user(email=email, password=PASSWORD, **fields)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def first_link(message) -> str:
    return re.search(r"https?://[^/\s]+(/\S+)", message.body).group(1)


@pytest.mark.django_db
def test_signup_with_roles_sends_a_confirmation_and_confirming_logs_in(client):
    response = client.post(
        "/accounts/signup/",
        {"email": "New@Example.test", "password1": PASSWORD, "password2": PASSWORD, "is_provider": "on"},
    )
    assert response.status_code == 302
    user = User.objects.get(email="new@example.test")
    assert (user.is_developer, user.is_provider) == (False, True)
    # Mandatory verification: no session until the address is confirmed.
    assert "_auth_user_id" not in client.session
    [message] = mail.outbox
    assert message.to == ["new@example.test"]
    confirm_url = first_link(message)
    response = client.post(confirm_url)
    assert EmailAddress.objects.get(user=user).verified
    assert int(client.session["_auth_user_id"]) == user.pk
    # A provider-only account goes on to set up its provider profile, what it signed up for.
    assert response.status_code == 302 and response["Location"] == "/provider/onboarding/"


@pytest.mark.django_db
def test_a_login_lands_on_onboarding_only_for_a_provider_without_a_profile(client):
    provider = verified_user("prov@example.test", is_developer=False, is_provider=True)
    both = verified_user("both@example.test", is_developer=True, is_provider=True)
    for user, landing in ((provider, "/provider/onboarding/"), (both, "/")):
        response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
        assert (response.status_code, response["Location"]) == (302, landing), user.email
        client.logout()
    # With a profile, the provider lands on the default page; a ?next= always wins.
    make_provider(user=provider, display_name="Prov")
    response = client.post("/accounts/login/", {"login": provider.email, "password": PASSWORD})
    assert response["Location"] == "/"
    client.logout()
    response = client.post("/accounts/login/?next=/gpus/", {"login": "both@example.test", "password": PASSWORD})
    assert response["Location"] == "/gpus/"


@pytest.mark.django_db
def test_signup_requires_a_role(client):
    response = client.post(
        "/accounts/signup/", {"email": "x@example.test", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    assert "Choose at least one role" in response.content.decode()
    assert not User.objects.filter(email="x@example.test").exists()


@pytest.mark.django_db
def test_login_with_email_then_logout(client):
    user = verified_user()
    response = client.post("/accounts/login/", {"login": "dev@example.test", "password": PASSWORD})
    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == user.pk
    client.post("/accounts/logout/")
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_wrong_password_is_refused_with_a_message(client):
    verified_user()
    response = client.post("/accounts/login/", {"login": "dev@example.test", "password": "nope"})
    assert response.status_code == 200
    assert "not correct" in response.content.decode()


@pytest.mark.django_db
def test_unverified_address_cannot_log_in(client):
    make_user(email="late@example.test", password=PASSWORD)
    client.post("/accounts/login/", {"login": "late@example.test", "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    assert mail.outbox  # a fresh confirmation was sent


@pytest.mark.django_db
def test_password_reset_by_email(client):
    user = verified_user()
    client.post("/accounts/password/reset/", {"email": user.email})
    [message] = mail.outbox
    reset_url = first_link(message)
    form_url = client.get(reset_url).url or reset_url  # allauth redirects to a key-less URL
    response = client.post(form_url, {"password1": "a-brand-new-passphrase", "password2": "a-brand-new-passphrase"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-brand-new-passphrase")


@pytest.mark.django_db
def test_every_page_shows_who_is_logged_in(client):
    user = verified_user(email="who@example.test", is_provider=True)
    node = make_node()
    client.force_login(user)
    for url in ["/", "/gpus/", f"/gpus/{node.id}/", "/account/", "/accounts/email/", "/accounts/password/change/"]:
        html = client.get(url).content.decode()
        whoami = html.split('data-testid="whoami"')[1].split("</div>")[0]
        assert "who@example.test" in whoami, url
        assert "developer · provider" in whoami, url


@pytest.mark.django_db
def test_anonymous_pages_offer_login(client):
    html = client.get("/gpus/").content.decode()
    assert "Not logged in" in html and "/accounts/login/" in html


@pytest.mark.django_db
def test_roles_page_needs_login_and_saves_roles(client):
    assert client.get("/account/").status_code == 302
    user = verified_user()
    client.force_login(user)
    response = client.post("/account/", {"is_developer": "on", "is_provider": "on"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.roles == ["developer", "provider"]
    response = client.post("/account/", {})
    assert "Choose at least one role" in response.content.decode()
    user.refresh_from_db()
    assert user.is_developer and user.is_provider  # unchanged


@pytest.mark.django_db
def test_admin_is_for_staff_only(client):
    node = make_node()
    outsider = verified_user(email="outsider@example.test")
    client.force_login(outsider)
    response = client.get("/admin/providers/node/")
    assert response.status_code == 302 and "/admin/login/" in response.url
    admin = verified_user(email="admin@example.test", is_staff=True, is_superuser=True)
    client.force_login(admin)
    for url in [
        "/admin/",
        "/admin/accounts/user/",
        "/admin/providers/node/",
        f"/admin/providers/node/{node.id}/change/",
        "/admin/providers/gpumodel/",
        "/admin/providers/region/",
        "/admin/providers/providerprofile/",
        "/admin/marketplace/offer/",
        "/admin/marketplace/demomarket/",
        "/admin/providers/node/?mode__exact=fizz&q=node",
    ]:
        assert client.get(url).status_code == 200, url
