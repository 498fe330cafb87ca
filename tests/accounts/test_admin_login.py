"""The admin has no password form of its own: /admin/login/ is the site's sign-in (allauth), whose
failed attempts are rate limited, and the admin still lets in staff only."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.accounts.test_accounts import PASSWORD, verified_user

pytestmark = pytest.mark.django_db


def _login(client: Client, email: str, password: str, next_url: str = "/admin/"):
    return client.post(f"/accounts/login/?next={next_url}", {"login": email, "password": password})


def test_the_admin_sends_visitors_to_the_sites_login_and_back(client: Client):
    staff = verified_user(email="staff@example.test", is_staff=True, is_superuser=True)

    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/?next=%2Fadmin%2F"
    assert response.status_code == 200

    response = _login(client, staff.email, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    # Signed in, the admin's login URL goes where it was asked to.
    assert client.get("/admin/login/?next=/admin/providers/node/")["Location"] == "/admin/providers/node/"


def test_the_admins_own_password_form_is_gone(client: Client):
    staff = verified_user(email="staff@example.test", is_staff=True, is_superuser=True)

    response = client.post("/admin/login/?next=/admin/", {"username": staff.email, "password": PASSWORD})

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_repeated_failed_admin_logins_are_limited(client: Client):
    staff = verified_user(email="staff@example.test", is_staff=True, is_superuser=True)

    for _ in range(5):
        response = _login(client, staff.email, "wrong-password")
        assert response.status_code == 200 and "_auth_user_id" not in client.session
    # Now even the right password is refused for a while: guessing the admin's password stops here.
    response = _login(client, staff.email, PASSWORD)
    assert "_auth_user_id" not in client.session
    assert response.status_code == 200 and "Too many failed login attempts" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_signed_in_non_staff_user_is_told_not_bounced(client: Client):
    member = verified_user(email="member@example.test")
    client.force_login(member)

    response = client.get("/admin/", follow=True)

    assert response.status_code == 403
    assert len(response.redirect_chain) == 1  # /admin/ -> /admin/login/, no loop through the site's login
    page = response.content.decode()
    assert "member@example.test" in page and "not a staff account" in page


def test_the_next_address_stays_on_this_site(client: Client):
    response = client.get("/admin/login/?next=https://evil.example/admin/")
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"
