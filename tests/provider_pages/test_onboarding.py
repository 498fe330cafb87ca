"""Becoming a provider, editing the profile, and who may see the provider pages."""

from __future__ import annotations

import pytest

from accounts.models import User
from providers.models import ProviderProfile
from tests.factories import make_user

pytestmark = pytest.mark.django_db

CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
# The same address with one letter's case flipped: still hex, but the EIP-55 checksum fails.
BAD_CHECKSUM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"
SOLANA = "11111111111111111111111111111111"


def _form(**overrides) -> dict:
    return {
        "display_name": "Garage GPUs",
        "payout_evm_address": CHECKSUMMED,
        "payout_solana_address": "",
        "default_region": "us-east",
        "default_mode": "fizz",
        **overrides,
    }


@pytest.fixture
def member(client) -> User:
    user = make_user(is_developer=True)
    client.force_login(user)
    return user


def test_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get("/provider/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("path", ["/provider/", "/provider/tokens/", "/provider/prices/", "/provider/stake/"])
def test_a_member_who_is_not_a_provider_is_sent_to_onboarding(client, member, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == "/provider/onboarding/"


def test_a_non_provider_sees_become_a_provider_in_the_nav_and_a_provider_sees_provider(client, member, provider):
    page = client.get("/billing/").content.decode()
    assert 'data-testid="nav-become-provider"' in page and 'data-testid="nav-provider"' not in page
    client.force_login(provider.user)
    page = client.get("/billing/").content.decode()
    assert 'data-testid="nav-provider"' in page and "Become a provider" not in page


def test_onboarding_form_lists_regions_and_explains_both_modes(client, member):
    page = client.get("/provider/onboarding/").content.decode()
    assert "<h1>Become a provider</h1>" in page
    assert '<option value="us-east">' in page and "<optgroup" in page
    assert "fixed Fizz prices" in page and "your own list prices" in page


def test_valid_onboarding_makes_a_provider_and_lands_on_the_dashboard(client, member):
    response = client.post("/provider/onboarding/", _form(payout_solana_address=SOLANA, default_mode="provider"))
    assert response.status_code == 302 and response["Location"] == "/provider/"
    profile = ProviderProfile.objects.get(user=member)
    assert (profile.display_name, profile.payout_evm_address, profile.payout_solana_address) == (
        "Garage GPUs",
        CHECKSUMMED,
        SOLANA,
    )
    assert (profile.default_region_id, profile.default_mode) == ("us-east", "provider")
    member.refresh_from_db()
    assert member.is_provider
    dashboard = client.get("/provider/")
    assert dashboard.status_code == 200
    assert "No nodes yet" in dashboard.content.decode()


def test_lowercase_evm_address_is_stored_checksummed(client, member):
    client.post("/provider/onboarding/", _form(payout_evm_address=CHECKSUMMED.lower()))
    assert ProviderProfile.objects.get(user=member).payout_evm_address == CHECKSUMMED


def test_bad_eip55_checksum_is_shown_next_to_the_field_and_nothing_is_written(client, member):
    response = client.post("/provider/onboarding/", _form(payout_evm_address=BAD_CHECKSUM))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="error-payout_evm_address"' in page
    assert "fails its EIP-55 checksum" in page
    assert f'value="{BAD_CHECKSUM}"' in page  # what they typed stays, to fix the typo
    assert not ProviderProfile.objects.filter(user=member).exists()
    member.refresh_from_db()
    assert not member.is_provider


def test_bad_solana_address_is_shown_next_to_its_field(client, member):
    response = client.post("/provider/onboarding/", _form(payout_evm_address="", payout_solana_address="0OIl" * 9))
    page = response.content.decode()
    assert 'data-testid="error-payout_solana_address"' in page
    assert "base58" in page
    assert not ProviderProfile.objects.filter(user=member).exists()


def test_no_payout_address_at_all_is_refused(client, member):
    response = client.post("/provider/onboarding/", _form(payout_evm_address="", payout_solana_address=""))
    page = response.content.decode()
    assert 'data-testid="error-payout_evm_address"' in page
    assert "Enter a payout address" in page
    assert not ProviderProfile.objects.filter(user=member).exists()


def test_missing_region_is_shown_next_to_the_region(client, member):
    page = client.post("/provider/onboarding/", _form(default_region="")).content.decode()
    assert 'data-testid="error-default_region"' in page
    assert not ProviderProfile.objects.filter(user=member).exists()


def test_the_same_page_edits_the_profile_later(client, provider):
    client.force_login(provider.user)
    page = client.get("/provider/onboarding/").content.decode()
    assert "<h1>Provider profile</h1>" in page
    assert 'value="Acme GPUs"' in page and f'value="{provider.payout_evm_address}"' in page
    response = client.post("/provider/onboarding/", _form(display_name="Acme Compute", default_region="eu-west"))
    assert response.status_code == 302
    provider.refresh_from_db()
    assert (provider.display_name, provider.default_region_id) == ("Acme Compute", "eu-west")
    assert ProviderProfile.objects.filter(user=provider.user).count() == 1


def test_a_profile_edit_with_an_error_keeps_the_old_profile(client, provider):
    client.force_login(provider.user)
    client.post("/provider/onboarding/", _form(display_name="Renamed", payout_evm_address=BAD_CHECKSUM))
    provider.refresh_from_db()
    assert provider.display_name == "Acme GPUs"
