"""`sphnctl` for what a provider does before its first node runs, and a renter's wallet and deposit
checks, as a subprocess against the live test server: node tokens (create, shown once with the
agent's command; list; revoke), a node's maintenance, linked wallets, and a deposit checked by its
transaction. --json parsed, exit codes checked."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from accounts.api_keys import api_key_create
from accounts.models import WalletLink
from chain.registry import ChainAddresses, registry_sync
from providers.models import Node, NodeToken
from tests.factories import make_node, make_provider
from tests.sdk import test_client_live as client_tests
from tests.sdk.test_cli_live import parsed, run  # noqa: F401  (run is a fixture)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
owner = client_tests.owner
_sqlite_reads_do_not_wait = client_tests._sqlite_reads_do_not_wait
ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"


def api_key(user, scopes: list[str] | None = None) -> str:
    _key, raw = api_key_create(user=user, label="cli provider tools", scopes=scopes or ["full"])
    return raw


@pytest.fixture
def provider(db):
    return make_provider(display_name="CLI GPUs")


def test_node_tokens_create_list_revoke(run, provider, live_server):  # noqa: F811
    key = api_key(provider.user, scopes=["provider"])
    made = run("provider", "tokens", "create", "--label", "gaming-pc", "--mode", "fizz", key=key)
    assert made.returncode == 0, made.stderr
    token = parsed(made)
    assert token["label"] == "gaming-pc" and token["mode"] == "fizz" and token["token"].startswith(token["prefix"])
    stored = NodeToken.objects.get(id=token["id"])
    assert stored.provider_id == provider.id and stored.revoked_at is None

    shown = run("provider", "tokens", "create", "--label", "mac-mini", key=key, plain=True)
    assert shown.returncode == 0, shown.stderr
    whole = NodeToken.objects.filter(label="mac-mini").get()
    assert "not shown again" in shown.stdout
    # The agent's start command, with this server and the whole token (printed once, here).
    start_line = next(line for line in shown.stdout.splitlines() if line.startswith("fizz start"))
    assert start_line.startswith(f"fizz start --server {live_server.url} --token {whole.prefix}")

    listed = parsed(run("provider", "tokens", key=key))  # the group's default: list
    assert [t["label"] for t in listed] == ["mac-mini", "gaming-pc"] or [t["label"] for t in listed] == [
        "gaming-pc",
        "mac-mini",
    ]
    assert all(t["token"] is None for t in listed)  # never again after creation

    revoked = run("provider", "tokens", "revoke", str(token["id"]), key=key)
    assert revoked.returncode == 0, revoked.stderr
    assert parsed(revoked)["revoked_at"]
    stored.refresh_from_db()
    assert stored.revoked_at is not None
    assert run("provider", "tokens", "revoke", "987654", key=key).returncode == 3

    reader = api_key(provider.user, scopes=["read"])
    refused = run("provider", "tokens", "create", "--label", "x", key=reader)
    assert refused.returncode == 4 and "provider" in parsed(refused)["error"]["message"]
    assert run("provider", "tokens", "create", "--label", "x", "--mode", "cloud", key=key).returncode == 2


def test_node_maintenance_on_and_off(run, provider):  # noqa: F811
    node = make_node(provider=provider)
    key = api_key(provider.user, scopes=["provider"])
    on = run("provider", "nodes", "maintenance", str(node.id), "--on", key=key)
    assert on.returncode == 0, on.stderr
    assert parsed(on)["id"] == node.id and parsed(on)["in_maintenance"] is True
    assert Node.objects.get(id=node.id).in_maintenance is True
    listed = parsed(run("provider", "nodes", "list", key=key))
    assert [(n["id"], n["in_maintenance"]) for n in listed] == [(node.id, True)]
    table = run("provider", "nodes", key=key, plain=True)
    assert table.returncode == 0 and "on" in table.stdout
    off = run("provider", "nodes", "maintenance", str(node.id), "--off", key=key)
    assert off.returncode == 0 and parsed(off)["in_maintenance"] is False
    assert Node.objects.get(id=node.id).in_maintenance is False

    other = make_node(provider=make_provider())
    assert run("provider", "nodes", "maintenance", str(other.id), "--on", key=key).returncode == 3
    assert Node.objects.get(id=other.id).in_maintenance is False
    missing_flag = run("provider", "nodes", "maintenance", str(node.id), key=key)
    assert missing_flag.returncode == 2


def test_wallets_show_the_current_links_and_the_earlier_ones(run, owner):  # noqa: F811
    key = api_key(owner, scopes=["read"])
    empty = parsed(run("wallets", key=key))
    assert empty["current"] == {"stake": None, "payout": None} and empty["history"] == []
    plain = run("wallets", key=key, plain=True)
    assert plain.returncode == 0 and "none (link one on /account/wallets/)" in plain.stdout
    now = timezone.now()
    WalletLink.objects.create(
        user=owner, address=ADDRESS, purpose="payout", chain_id=8453, message="m", signature="0x", linked_at=now
    )
    linked = parsed(run("wallets", key=key))
    assert linked["current"]["payout"]["address"] == ADDRESS and linked["current"]["payout"]["chain_id"] == 8453
    assert ADDRESS in run("wallets", key=key, plain=True).stdout


def test_deposits_check_refuses_what_it_cannot_read(run, owner):  # noqa: F811
    registry_sync(devnet=True, keys=("base",), addresses={"base": ChainAddresses(receiver=ADDRESS)})
    key = api_key(owner)
    unknown_chain = run("deposits", "check", "--chain", "dogecoin", "--tx", "0x" + "ab" * 32, key=key)
    assert unknown_chain.returncode == 3, unknown_chain.stdout  # 404: no such chain
    assert parsed(unknown_chain)["error"]["message"] == "Unknown chain 'dogecoin'. Chains that take deposits: base."
    not_a_hash = run("deposits", "check", "--chain", "base", "--tx", "hello", key=key)
    assert not_a_hash.returncode == 2, not_a_hash.stdout
    assert run("deposits", "check", "--chain", "base", key=key).returncode == 2  # --tx is required
    # The group's default still lists (and takes -n).
    listed = run("deposits", "-n", "5", key=key)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert run("deposits", key=key, plain=True).stdout.strip() == "None yet."
