"""Wallet linking with Sign-In with Ethereum (EIP-4361): the services and /api/v1/wallets.
Messages are signed locally with eth-account (EIP-191 personal_sign): no chain needed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct

from accounts.api_keys import api_key_create
from accounts.models import WalletLink, WalletNonce
from accounts.wallets import (
    NONCE_TTL,
    SiweMessage,
    siwe_message_text,
    siwe_parse,
    wallet_current,
    wallet_link,
    wallet_nonce,
)
from core.errors import ApplicationError
from tests.factories import make_user

pytestmark = pytest.mark.django_db
ALICE_KEY = Account.from_key("0x" + "11" * 32)
BOB_KEY = Account.from_key("0x" + "22" * 32)
SITE = "https://spheron.example"


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = SITE


@pytest.fixture
def owner():
    return make_user(email="owner@example.test")


@pytest.fixture
def outsider():
    return make_user(email="outsider@example.test")


def sign(message: str, account=ALICE_KEY) -> str:
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


def issue(user, account=ALICE_KEY, purpose="stake", chain_id=8453) -> str:
    _nonce, message = wallet_nonce(user=user, address=account.address, chain_id=chain_id, purpose=purpose)
    return message


def refused(match: str, **kwargs) -> ApplicationError:
    with pytest.raises(ApplicationError, match=match) as info:
        wallet_link(**kwargs)
    assert 400 <= info.value.status < 500
    return info.value


# --- the message ---------------------------------------------------------------------------
def test_the_message_follows_eip_4361_and_parses_back(owner):
    message = issue(owner)
    lines = message.split("\n")
    assert lines[0] == "spheron.example wants you to sign in with your Ethereum account:"
    assert lines[1] == ALICE_KEY.address
    assert lines[2] == "" and lines[4] == ""
    assert lines[3] == "Link this address to my Spheron account as its stake wallet."
    assert lines[5:9] == [f"URI: {SITE}", "Version: 1", "Chain ID: 8453", f"Nonce: {WalletNonce.objects.get().nonce}"]
    assert lines[9].startswith("Issued At: ") and lines[9].endswith("Z")
    assert lines[10].startswith("Expiration Time: ")
    parsed = siwe_parse(message)
    assert parsed.expiration_time - parsed.issued_at == NONCE_TTL
    assert siwe_message_text(parsed) == message


def test_a_message_without_statement_has_two_empty_lines_and_parses():
    now = timezone.now().replace(microsecond=0)
    message = SiweMessage(
        domain="spheron.example",
        address=ALICE_KEY.address,
        statement="",
        uri=SITE,
        version="1",
        chain_id=1,
        nonce="abcdefgh1",
        issued_at=now,
        expiration_time=None,
        not_before=None,
    )
    text = siwe_message_text(message)
    assert f"{ALICE_KEY.address}\n\n\nURI: " in text
    assert siwe_parse(text) == message


@pytest.mark.parametrize(
    ("address", "chain_id", "purpose", "match"),
    [
        ("0x1234", 8453, "stake", "EVM address"),
        (ALICE_KEY.address, 999999, "stake", "not a chain we know"),
        (ALICE_KEY.address, 8453, "rent", "stake.*payout"),
    ],
)
def test_nonce_refuses_bad_input(owner, address, chain_id, purpose, match):
    with pytest.raises(ApplicationError, match=match):
        wallet_nonce(user=owner, address=address, chain_id=chain_id, purpose=purpose)


def test_nonce_accepts_a_lowercase_address_and_writes_it_checksummed(owner):
    message = issue(owner, account=ALICE_KEY)
    _nonce, lower = wallet_nonce(user=owner, address=ALICE_KEY.address.lower(), chain_id=8453, purpose="stake")
    assert lower.split("\n")[1] == ALICE_KEY.address == message.split("\n")[1]


# --- linking -------------------------------------------------------------------------------
def test_a_signed_message_links_the_address(owner):
    message = issue(owner)
    link = wallet_link(user=owner, message=message, signature=sign(message), purpose="stake")
    assert (link.address, link.purpose, link.chain_id, link.revoked_at) == (ALICE_KEY.address, "stake", 8453, None)
    assert link.message == message
    assert wallet_current(user=owner) == {"stake": link, "payout": None}
    assert WalletNonce.objects.get().used_at is not None


def test_relinking_revokes_the_old_address_and_keeps_history(owner):
    first_message = issue(owner, ALICE_KEY)
    first = wallet_link(user=owner, message=first_message, signature=sign(first_message), purpose="stake")
    second_message = issue(owner, BOB_KEY)
    second = wallet_link(user=owner, message=second_message, signature=sign(second_message, BOB_KEY), purpose="stake")
    first.refresh_from_db()
    assert first.revoked_at is not None and second.revoked_at is None
    assert wallet_current(user=owner)["stake"] == second
    assert WalletLink.objects.filter(user=owner).count() == 2


def test_stake_and_payout_are_separate_links(owner):
    stake_message = issue(owner, purpose="stake")
    wallet_link(user=owner, message=stake_message, signature=sign(stake_message), purpose="stake")
    payout_message = issue(owner, purpose="payout")
    wallet_link(user=owner, message=payout_message, signature=sign(payout_message), purpose="payout")
    current = wallet_current(user=owner)
    assert current["stake"].address == current["payout"].address == ALICE_KEY.address


def test_a_stake_address_belongs_to_one_account(owner, outsider):
    message = issue(owner)
    wallet_link(user=owner, message=message, signature=sign(message), purpose="stake")
    theirs = issue(outsider)
    error = refused("already the stake wallet of another account", user=outsider, message=theirs,
                    signature=sign(theirs), purpose="stake")  # fmt: skip
    assert error.status == 409
    assert not WalletNonce.objects.get(nonce=siwe_parse(theirs).nonce).used_at  # rolled back with the link


def test_wrong_domain_is_refused(owner, settings):
    message = issue(owner)
    settings.SITE_URL = "https://other.example"
    refused("written for spheron.example, not other.example", user=owner, message=message,
            signature=sign(message), purpose="stake")  # fmt: skip


def test_a_reused_nonce_is_refused(owner):
    message = issue(owner)
    wallet_link(user=owner, message=message, signature=sign(message), purpose="stake")
    error = refused("already used", user=owner, message=message, signature=sign(message), purpose="stake")
    assert error.status == 409
    assert WalletLink.objects.count() == 1


def test_an_expired_message_is_refused(owner):
    message = issue(owner)
    WalletNonce.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    refused("expired", user=owner, message=message, signature=sign(message), purpose="stake")


def test_a_message_past_its_expiration_time_is_refused_even_with_a_live_nonce(owner):
    _nonce, message = wallet_nonce(user=owner, address=ALICE_KEY.address, chain_id=8453, purpose="stake")
    parsed = siwe_parse(message)
    stale = siwe_message_text(
        SiweMessage(**{**parsed.__dict__, "expiration_time": timezone.now() - timedelta(minutes=1)})
    )
    refused("expired", user=owner, message=stale, signature=sign(stale), purpose="stake")


def test_a_message_issued_in_the_future_is_refused(owner):
    parsed = siwe_parse(issue(owner))
    future = siwe_message_text(SiweMessage(**{**parsed.__dict__, "issued_at": timezone.now() + timedelta(hours=1)}))
    refused("in the future", user=owner, message=future, signature=sign(future), purpose="stake")


def test_a_signature_by_another_key_is_refused(owner):
    message = issue(owner, ALICE_KEY)
    refused(f"signed by {BOB_KEY.address}, not by {ALICE_KEY.address}", user=owner, message=message,
            signature=sign(message, BOB_KEY), purpose="stake")  # fmt: skip
    assert not WalletLink.objects.exists()


@pytest.mark.parametrize("signature", ["0xdead", "0x" + "00" * 65, "not hex", "0x" + "zz" * 65])
def test_a_bad_signature_is_refused(owner, signature):
    message = issue(owner)
    refused("signature", user=owner, message=message, signature=signature, purpose="stake")


def test_a_message_changed_after_signing_is_refused(owner):
    message = issue(owner)
    signature = sign(message)
    changed = message.replace("stake wallet", "payout wallet")
    refused("signed by", user=owner, message=changed, signature=signature, purpose="stake")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda m: "hello",
        lambda m: m.replace("Version: 1", "Version: 2"),
        lambda m: m.replace("\nURI:", "\nURL:"),
        lambda m: m + "\nbogus",
        lambda m: m.replace("Issued At: ", "Issued At: yesterday "),
        lambda m: m.replace("\n", "\r\n"),
        lambda m: "",
        lambda m: "x\x00y",
        lambda m: m + "\n" * 5000,
    ],
)
def test_a_malformed_message_is_refused(owner, mangle):
    message = mangle(issue(owner))
    refused(".", user=owner, message=message, signature=sign(message or "x"), purpose="stake")
    assert not WalletLink.objects.exists()


def test_a_lowercase_address_in_the_message_is_refused(owner):
    message = issue(owner)
    lowered = message.replace(ALICE_KEY.address, ALICE_KEY.address.lower())
    refused("EIP-55", user=owner, message=lowered, signature=sign(lowered), purpose="stake")


def test_a_nonce_issued_to_someone_else_is_refused(owner, outsider):
    message = issue(owner)
    refused("not issued to you", user=outsider, message=message, signature=sign(message), purpose="stake")


def test_a_nonce_for_another_purpose_is_refused(owner):
    message = issue(owner, purpose="payout")
    refused("payout wallet, not a stake wallet", user=owner, message=message, signature=sign(message),
            purpose="stake")  # fmt: skip


def test_an_unknown_chain_in_the_message_is_refused(owner):
    message = issue(owner).replace("Chain ID: 8453", "Chain ID: 777777")
    refused("not a chain we know", user=owner, message=message, signature=sign(message), purpose="stake")


def test_a_chain_other_than_the_nonce_s_is_refused(owner):
    message = issue(owner).replace("Chain ID: 8453", "Chain ID: 10")
    refused("differs", user=owner, message=message, signature=sign(message), purpose="stake")


# --- API -----------------------------------------------------------------------------------
def test_api_links_with_an_api_key_and_lists_history(client, owner):
    _key, raw = api_key_create(user=owner, label="script")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    response = client.post(
        "/api/v1/wallets/nonce",
        {"address": ALICE_KEY.address, "chain_id": 8453, "purpose": "stake"},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 200, response.content
    message = response.json()["message"]
    response = client.post(
        "/api/v1/wallets",
        {"message": message, "signature": sign(message), "purpose": "stake"},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 201, response.content
    assert response.json()["address"] == ALICE_KEY.address
    again = client.post(
        "/api/v1/wallets",
        {"message": message, "signature": sign(message), "purpose": "stake"},
        content_type="application/json",
        **auth,
    )
    assert again.status_code == 409 and "already used" in again.json()["message"]
    listing = client.get("/api/v1/wallets", **auth).json()
    assert listing["current"]["stake"]["address"] == ALICE_KEY.address
    assert listing["current"]["payout"] is None
    assert [row["address"] for row in listing["history"]] == [ALICE_KEY.address]


def test_api_refusals_are_4xx_json(client, owner):
    client.force_login(owner)
    bad = client.post(
        "/api/v1/wallets",
        {"message": "hello", "signature": "0x00", "purpose": "stake"},
        content_type="application/json",
        HTTP_X_CSRFTOKEN="x",
        enforce_csrf_checks=False,
    )
    assert bad.status_code == 400 and "EIP-4361" in bad.json()["message"]
    wrong_type = client.post(
        "/api/v1/wallets/nonce",
        {"address": ALICE_KEY.address, "chain_id": "8453", "purpose": "stake"},
        content_type="application/json",
    )
    assert wrong_type.status_code == 422
    other_purpose = client.post(
        "/api/v1/wallets/nonce",
        {"address": ALICE_KEY.address, "chain_id": 8453, "purpose": "rent"},
        content_type="application/json",
    )
    assert other_purpose.status_code == 422


def test_api_needs_authentication(client):
    assert client.get("/api/v1/wallets").status_code == 401
    response = client.post(
        "/api/v1/wallets/nonce",
        {"address": ALICE_KEY.address, "chain_id": 8453, "purpose": "stake"},
        content_type="application/json",
    )
    assert response.status_code == 401


def test_another_user_sees_none_of_my_wallets(client, owner, outsider):
    message = issue(owner)
    wallet_link(user=owner, message=message, signature=sign(message), purpose="stake")
    client.force_login(outsider)
    listing = client.get("/api/v1/wallets").json()
    assert listing == {"current": {"stake": None, "payout": None}, "history": []}
    page = client.get("/account/wallets/")
    assert page.status_code == 200 and ALICE_KEY.address not in page.content.decode()


def test_the_wallets_page_shows_current_and_history(client, owner):
    for account in (ALICE_KEY, BOB_KEY):
        message = issue(owner, account)
        wallet_link(user=owner, message=message, signature=sign(message, account), purpose="stake")
    client.force_login(owner)
    html = client.get("/account/wallets/").content.decode()
    assert 'data-testid="wallet-stake-address">' + BOB_KEY.address in html
    assert html.count('data-testid="wallet-history-row"') == 2
    assert "replaced" in html
    assert "/account/wallets/" in client.get("/account/").content.decode()


def test_admin_lists_links_read_only(client, owner):
    message = issue(owner)
    wallet_link(user=owner, message=message, signature=sign(message), purpose="stake")
    staff = make_user(email="staff@example.test", is_staff=True, is_superuser=True)
    client.force_login(staff)
    listing = client.get("/admin/accounts/walletlink/")
    assert listing.status_code == 200 and ALICE_KEY.address in listing.content.decode()
    assert client.get("/admin/accounts/walletlink/add/").status_code == 403
