"""Logging in through the site's own login form, for the browser tests (tests/e2e and the browser
tests of other rooms, such as tests/store and tests/billing_alerts)."""

from __future__ import annotations

import re
from urllib.parse import quote

from allauth.account.models import EmailAddress
from django.core import mail
from playwright.sync_api import Page, expect

from tests.factories import make_user

PASSWORD = "correct-horse-battery-staple"


def verified_user(email: str, **fields):
    """A user with PASSWORD whose e-mail address is confirmed, as after following the sign-up link."""
    user = make_user(email=email, password=PASSWORD, **fields)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def sign_up(page: Page, email: str, *, password: str = PASSWORD) -> None:
    """Sign up through the form and confirm the address with the link of the e-mail the site sends
    (the locmem outbox); the visitor is then logged in."""
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", password)
    page.fill("input[name=password2]", password)
    page.locator("main form button[type=submit]").click()
    expect(page.locator("main h1")).to_contain_text("Verify")
    [message] = [m for m in mail.outbox if email in m.to]
    page.goto(re.search(r"https?://[^/\s]+(/\S+)", message.body).group(1))
    page.locator("main form button[type=submit]").click()
    expect(page.get_by_test_id("whoami")).to_contain_text(email)


def log_in(page: Page, email: str, then: str, *, behind_login: bool = True, password: str = PASSWORD) -> None:
    """Log in through the form and land on `then`.

    A page behind the login is opened first and must send the visitor to the form; a public page
    (`behind_login=False`, the model store) is reached through /accounts/login/?next=."""
    if behind_login:
        page.goto(then)
        assert "/accounts/login/" in page.url, f"{then} did not send a visitor who is not logged in to the login form"
    else:
        page.goto(f"/accounts/login/?next={quote(then)}")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"**{then}")


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()
