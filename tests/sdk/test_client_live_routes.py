"""spheron_sdk.client against the live test server, for the routes the other live tests reach only
through another method or through sphnctl: the spec schema, one logs page, the match proof, the
billing page links, deposit instructions and checks (a real deposit on anvil), Sign-In with
Ethereum, maintenance, the earnings estimate, and RateLimit.reset_at. No mocked HTTP: the node's
log lines go through the agent's own route with a node secret; pages are read with a real session.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
import yaml
from django.conf import settings as django_settings
from django.test import Client as DjangoClient
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from spheron_sdk.client import Client
from spheron_sdk.errors import Conflict, NotFound, PermissionDenied, RateLimited, ValidationError
from spheron_sdk.matching import verify_match

from billing.selectors import user_balances
from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import Deposit, DepositStatus, Rate
from chain.registry import ChainAddresses, registry_sync
from chain.services import reference_for
from marketplace.deployments import services as deployments
from marketplace.models import Deployment
from providers import liveness
from providers.models import NodeEvent
from tests.deployments import conftest as deployments_conftest
from tests.deployments.conftest import spec_text
from tests.factories import make_node, make_provider
from tests.sdk import test_client_live as client_tests
from tests.sdk.test_client_live import api_key

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
market = deployments_conftest.market
owner = client_tests.owner
api = client_tests.api
_sqlite_reads_do_not_wait = client_tests._sqlite_reads_do_not_wait

PAYER = DEV_ACCOUNTS[2]  # an anvil dev account with ETH: pays the deposit


def matched(deployment_id: int):
    """The order matched now (as the matching worker would): its lease."""
    order = Deployment.objects.get(id=deployment_id).orders.get()
    outcome = deployments.match_order(order_id=order.id)
    assert outcome.lease is not None, outcome
    return outcome.lease


def node_secret(node) -> str:
    """A node secret for `node`, as registration issues one to its agent."""
    raw = liveness.node_secret_new(node.id)
    type(node).objects.filter(id=node.id).update(secret_hash=liveness.secret_hash(raw))
    liveness.node_auth_forget(node.id)
    return raw


def session_cookies(user) -> dict[str, str]:
    """A logged-in session of `user`, for reading the site's pages from the live server."""
    client = DjangoClient()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return {name: client.cookies[name].value}


# --- deployments ------------------------------------------------------------------------------------


def test_spec_schema_describes_every_field_of_a_spec(api):
    schema = api.deployments.spec_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["services"] and schema["additionalProperties"] is False
    service = schema["properties"]["services"]["additionalProperties"]
    assert set(service["required"]) == {"image", "resources", "price"}
    resources = service["properties"]["resources"]["properties"]
    assert resources["gpu"]["properties"]["units"] == {"type": "integer", "minimum": 1, "maximum": 16}
    assert service["properties"]["price"]["properties"]["token"] == {"const": "USD"}
    # Every key of the spec the other tests deploy is a property the schema names, at its level.
    spec = yaml.safe_load(spec_text())
    assert set(spec) <= set(schema["properties"])
    app = spec["services"]["app"]
    assert set(app) <= set(service["properties"])
    assert set(app["resources"]) <= set(resources)
    assert set(app["resources"]["gpu"]) <= set(resources["gpu"]["properties"])
    assert set(spec["deployment"]) <= set(schema["properties"]["deployment"]["properties"])


def test_a_logs_page_holds_the_lines_the_agent_reported_and_a_cursor(live_server, api, market):
    created = api.deployments.create(spec_text(duration="1h"))
    lease = matched(created["id"])
    secret = node_secret(lease.node)
    events = f"{live_server.url}/api/v1/leases/{lease.id}/events"
    reported = httpx.post(
        events,
        json={
            "events": [
                {"type": "running"},
                {"type": "log", "stream": "stdout", "lines": ["epoch 1", "epoch 2", "epoch 3"]},
                {"type": "log", "stream": "stderr", "lines": ["warning: slow disk"]},
            ]
        },
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert reported.status_code == 202, reported.text

    first = api.deployments.logs(created["id"], limit=2)
    assert [(line["stream"], line["line"]) for line in first["lines"]] == [("stdout", "epoch 1"), ("stdout", "epoch 2")]
    assert first["more"] is True and first["next_after"] == first["lines"][-1]["id"]
    assert {line["lease_id"] for line in first["lines"]} == {lease.id}
    rest = api.deployments.logs(created["id"], after=first["next_after"], limit=2)
    assert [(line["stream"], line["line"]) for line in rest["lines"]] == [
        ("stdout", "epoch 3"),
        ("stderr", "warning: slow disk"),
    ]
    assert rest["more"] is False and rest["next_after"] == rest["lines"][-1]["id"]
    # Polling past the last line: nothing new, and the cursor stays where it was.
    empty = api.deployments.logs(created["id"], after=rest["next_after"])
    assert empty == {"lines": [], "next_after": rest["next_after"], "more": False}
    last = api.deployments.logs(created["id"], tail=1)
    assert [line["line"] for line in last["lines"]] == ["warning: slow disk"]
    with pytest.raises(ValidationError) as too_many:
        api.deployments.logs(created["id"], limit=1001)
    assert too_many.value.status == 422 and too_many.value.fields[0]["field"] == "limit"
    with pytest.raises(NotFound):
        api.deployments.logs(987654)


def test_the_match_proof_of_a_matched_deployment_verifies(api, market):
    created = api.deployments.create(spec_text(duration="1h"))
    with pytest.raises(NotFound) as unmatched:
        api.deployments.match_proof(created["id"])
    assert unmatched.value.message == "This deployment has not been matched to a node yet."
    lease = matched(created["id"])

    proof = api.deployments.match_proof(created["id"])
    order = Deployment.objects.get(id=created["id"]).orders.get()
    assert proof["order_id"] == order.id and proof["winner"] == lease.node_id
    rtx = {market[name].id for name in ("cheap", "good", "dear")}
    assert {candidate["node_id"] for candidate in proof["candidates"]} == rtx  # the H100 box does not fit
    checked = verify_match(proof)
    assert checked["ok"] is True and checked["winner"] == lease.node_id
    assert checked["commitment"] == proof["commitment"]
    assert api.deployments.match_proof(created["id"], attempt=1) == proof
    # The proof is what binds the winner: another winner or another seed does not verify.
    loser = next(node for node in rtx if node != lease.node_id)
    assert verify_match({**proof, "winner": loser})["ok"] is False
    assert verify_match({**proof, "seed": proof["seed"] + "0"})["commitment_ok"] is False
    with pytest.raises(NotFound):
        api.deployments.match_proof(created["id"], attempt=2)


# --- billing: page links, deposit instructions, deposit checks -------------------------------------------


def test_topup_page_url_opens_the_page_with_the_amount_filled_in(live_server, api, owner, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_fake"  # the card form shows only when Stripe is set up
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_fake"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_fake"
    url = api.billing.topup_page_url("25.00")
    assert url == f"{live_server.url}/billing/topup/?amount=25.00"
    page = httpx.get(url, cookies=session_cookies(owner))
    assert page.status_code == 200 and 'name="amount" value="25.00"' in page.text
    assert api.billing.topup_page_url() == f"{live_server.url}/billing/topup/"


def test_deposit_instructions_for_base_and_the_typed_errors_of_a_check(api, owner):
    receiver = "0x" + "44" * 20
    registry_sync(devnet=True, keys=("base",), addresses={"base": ChainAddresses(receiver=receiver)})
    instructions = api.billing.deposit_instructions()
    assert instructions["reference"] == reference_for(owner).ref and len(instructions["reference"]) == 66
    (base,) = [chain for chain in instructions["chains"] if chain["key"] == "base"]
    assert base["receiver_address"].lower() == receiver and base["chain_id"] == 8453 and base["kind"] == "evm"
    assert Decimal(base["minimum_usd"]) > 0 and base["minimum_usd_micros"] == int(Decimal(base["minimum_usd"]) * 10**6)
    eth = next(token for token in base["tokens"] if token["symbol"] == "ETH")
    assert eth["decimals"] == 18 and Decimal(eth["rate_usd"]) > 0 and eth["fee_bps"] == 200

    with pytest.raises(NotFound) as unknown_chain:
        api.billing.check_deposit("dogecoin", "0x" + "ab" * 32)
    assert unknown_chain.value.message == "Unknown chain 'dogecoin'. Chains that take deposits: base."
    assert unknown_chain.value.fields == [{"field": "chain", "message": unknown_chain.value.message}]
    with pytest.raises(ValidationError) as bad_hash:
        api.billing.check_deposit("base", "0x1234")
    assert bad_hash.value.status == 422
    assert bad_hash.value.message == "A transaction hash is 0x followed by 64 hexadecimal digits."
    assert bad_hash.value.fields[0]["field"] == "tx_hash"


@pytest.fixture
def base_chain(home_chain, settings):
    """Base on anvil with the contracts, taking deposits after 3 confirmations."""
    settings.CHAIN_DEVNET_FINALITY = 3
    return home_chain()


def test_a_real_deposit_on_anvil_is_found_and_credited_by_check_deposit(live_server, api, owner, base_chain):
    node = base_chain
    instructions = api.billing.deposit_instructions()
    (base,) = [chain for chain in instructions["chains"] if chain["key"] == "base"]
    assert base["receiver_address"].lower() == node.contracts["PaymentReceiver"].lower()
    eth = next(token for token in base["tokens"] if token["symbol"] == "ETH")

    # The page the SDK links to works out the amount of ETH for $20 at the rate the API gave.
    url = api.billing.crypto_page_url(chain="base", token="ETH", usd="20")
    assert url == f"{live_server.url}/billing/topup/?chain=base&token=ETH&usd=20#pay-base-eth"
    page = httpx.get(url, cookies=session_cookies(owner))
    assert page.status_code == 200 and 'id="pay-base-eth"' in page.text
    sent = re.search(r'data-testid="amount-to-send" data-base-units="(\d+)"', page.text)
    assert sent, html.unescape(page.text)[:2000]
    wei = int(sent.group(1))
    assert wei * Decimal(eth["rate_usd"]) / 10**18 >= Decimal(20)  # rounded up: never short of $20

    missing = "0x" + "cd" * 32
    with pytest.raises(NotFound) as not_mined:
        api.billing.check_deposit("base", missing)
    assert not_mined.value.message == f"No transaction {missing} on Base: not mined yet, or sent on another chain."

    receiver = node.contract("PaymentReceiver")
    reference = bytes.fromhex(instructions["reference"].removeprefix("0x"))
    tx = receiver.functions.deposit(reference).transact({"from": PAYER.address, "value": wei})
    node.w3.eth.wait_for_transaction_receipt(tx)
    tx_hash = "0x" + bytes(tx).hex()
    seen = api.billing.check_deposit("base", tx_hash)
    assert seen["yours"] == [True] and seen["items"][0]["status"] in ("seen", "confirming")
    assert user_balances(user=owner).available == 100_000_000  # not final yet: nothing credited
    for _ in range(2):
        node.rpc("evm_mine")  # 3 confirmations with the deposit's own block
    final = api.billing.check_deposit("base", tx_hash)
    assert final["yours"] == [True] and final["items"][0]["status"] == "credited"
    deposit = Deposit.objects.get(tx_hash=tx_hash)
    assert deposit.status == DepositStatus.CREDITED and deposit.user == owner and int(deposit.amount) == wei
    assert deposit.credit_micros >= 19_600_000  # $20 less the 2% fee, at least
    assert user_balances(user=owner).available == 100_000_000 + deposit.credit_micros
    assert api.billing.balance()["available_micros"] == 100_000_000 + deposit.credit_micros
    again = api.billing.check_deposit("base", tx_hash)  # checked twice: credited once
    assert again["items"][0]["status"] == "credited"
    assert user_balances(user=owner).available == 100_000_000 + deposit.credit_micros


# --- wallets (Sign-In with Ethereum) ------------------------------------------------------------------


def sign(account, message: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=message)).signature).hex()


def test_wallet_nonce_sign_link_and_a_bad_signature(api, owner):
    wallet, stranger = Account.create(), Account.create()  # throwaway keys
    issued = api.wallets.nonce(address=wallet.address.lower(), chain_id=8453, purpose="payout")
    message = issued["message"]
    assert message.split("\n")[1] == wallet.address  # checksummed by the server
    assert f"Nonce: {issued['nonce']}" in message and "Chain ID: 8453" in message
    assert "as its payout wallet." in message

    with pytest.raises(ValidationError) as forged:
        api.wallets.link(message=message, signature=sign(stranger, message), purpose="payout")
    assert forged.value.status == 400
    assert forged.value.message == f"The message was signed by {stranger.address}, not by {wallet.address}."
    assert forged.value.fields == [{"field": "signature", "message": forged.value.message}]
    with pytest.raises(ValidationError, match="not a 65-byte hexadecimal signature"):
        api.wallets.link(message=message, signature="0x00", purpose="payout")
    assert api.wallets.list()["current"]["payout"] is None  # nothing linked by the refusals

    linked = api.wallets.link(message=message, signature=sign(wallet, message), purpose="payout")
    assert (linked["address"], linked["purpose"], linked["chain_id"]) == (wallet.address, "payout", 8453)
    assert linked["revoked_at"] is None
    listed = api.wallets.list()
    assert listed["current"]["payout"]["address"] == wallet.address and listed["current"]["stake"] is None
    with pytest.raises(Conflict) as replayed:
        api.wallets.link(message=message, signature=sign(wallet, message), purpose="payout")
    assert replayed.value.message == "The message's nonce was already used: ask for a new message."
    with pytest.raises(ValidationError) as bad_chain:
        api.wallets.nonce(address=wallet.address, chain_id=999999, purpose="payout")
    assert "is not a chain we know" in bad_chain.value.message and bad_chain.value.fields[0]["field"] == "chain_id"


# --- providers ----------------------------------------------------------------------------------------


def test_maintenance_on_and_off_shows_in_the_nodes_and_the_market(live_server, api):
    profile = make_provider(display_name="SDK Maintainer")
    node = make_node(provider=profile, name="rig-m")
    other = make_node(provider=make_provider(display_name="Someone Else"))
    with Client(live_server.url, api_key(profile.user), retries=0) as provider:
        assert [row["in_maintenance"] for row in provider.provider.nodes()] == [False]
        assert node.id in {offer["node_id"] for offer in api.offers.search("")}

        on = provider.provider.maintenance(node.id, on=True)
        assert on["id"] == node.id and on["name"] == "rig-m" and on["in_maintenance"] is True
        assert [(row["id"], row["in_maintenance"]) for row in provider.provider.nodes()] == [(node.id, True)]
        assert node.id not in {offer["node_id"] for offer in api.offers.search("")}  # not matchable

        off = provider.provider.maintenance(node.id, on=False)
        assert off["in_maintenance"] is False
        assert [row["in_maintenance"] for row in provider.provider.nodes()] == [False]
        assert node.id in {offer["node_id"] for offer in api.offers.search("")}
        kinds = list(NodeEvent.objects.filter(node=node).order_by("at", "id").values_list("kind", flat=True))
        assert kinds[-2:] == ["maintenance_on", "maintenance_off"]

        with pytest.raises(NotFound) as theirs:
            provider.provider.maintenance(other.id, on=True)
        assert theirs.value.message == "No such node."
    with pytest.raises(PermissionDenied) as renter:
        api.provider.maintenance(node.id, on=True)
    assert renter.value.message == "Become a provider first."


def test_the_earnings_estimate_adds_up_for_a_gpu_and_its_hours(live_server, settings):
    settings.PLATFORM_FEE_PROVIDER = Decimal("0.05")
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal("0.05"), at=timezone.now(), source="test")
    with Client(live_server.url, retries=0) as public:  # the calculator needs no key
        estimate = public.provider.earnings_estimate(
            gpu="h100", count="2", mode="provider", price="0.50", tier="3", uptime="90", utilization="50"
        )
        inputs = estimate["inputs"]
        assert (inputs["gpu"], inputs["count"], inputs["mode"], inputs["tier"]) == ("h100", 2, "provider", 3)
        # Rental: 2 GPUs at $0.50 for 730 h × 90% uptime × 50% leased, less the 5% provider fee.
        assert estimate["rental_price_per_hour"] == "1.000000" and estimate["rental_price_source"] == "yours"
        leased_hours = Decimal(estimate["leased_hours"])
        assert leased_hours == 730 * Decimal("0.9") * Decimal("0.5") == Decimal("328.5")
        gross, fee, net = (Decimal(estimate[key]) for key in ("rental_gross", "platform_fee", "rental_net"))
        assert gross == leased_hours * 1 == Decimal("328.5")
        assert estimate["platform_fee_rate"] == "0.05" and fee == gross * Decimal("0.05")
        assert net == gross - fee == Decimal("312.075")
        # $SPON: points an era × eras a month × $SPON a point, valued at the rate.
        points, eras = Decimal(estimate["points_per_era"]), Decimal(estimate["eras_per_month"])
        spon = Decimal(estimate["spon_per_month"])
        assert points > 0 and eras == Decimal("30.416666")  # 730 h ÷ 24 h, to 6 places
        assert abs(points * Decimal(730) / 24 * Decimal(estimate["spon_per_point"]) - spon) < Decimal("0.000001")
        assert estimate["spon_usd_rate"] == "0.05"
        spon_usd = Decimal(estimate["spon_usd_per_month"])
        assert abs(spon * Decimal("0.05") - spon_usd) <= Decimal("0.000001")
        assert Decimal(estimate["total_usd"]) == net + spon_usd
        assert estimate["receipt"]["points"] == estimate["points_per_era"]

        with pytest.raises(ValidationError) as bad:
            public.provider.earnings_estimate(gpu="h100", mode="provider", tier="3", uptime="150", utilization="50")
        assert bad.value.status == 400 and bad.value.message.startswith("Invalid input. uptime:")
        assert "A percentage from 0 to 100" in bad.value.message
        assert [field["field"] for field in bad.value.fields] == ["uptime"]


# --- rate limits --------------------------------------------------------------------------------------


@pytest.fixture
def limited(live_server, owner, settings) -> Iterator[Client]:
    settings.API_KEY_RATE_LIMITS = {"read": "2/min", "write": "120/min", "deploy": "30/min"}
    with Client(live_server.url, api_key(owner), retries=0) as client:
        yield client


def test_reset_at_is_when_the_window_ends_in_the_future(limited):
    assert limited.last_rate_limit is None
    before = time.time()
    limited.billing.balance()
    after = time.time()
    window = limited.last_rate_limit
    assert window.policy == "read" and window.limit == 2 and window.window == 60 and window.remaining == 1
    assert before <= window.received_at <= after
    assert window.reset_at == window.received_at + window.reset
    assert time.time() < window.reset_at <= after + 60
    limited.billing.balance()
    with pytest.raises(RateLimited) as refused:
        limited.billing.balance()
    blocked = refused.value.rate_limit
    assert blocked.remaining == 0 and time.time() < blocked.reset_at <= time.time() + 60
    assert refused.value.retry_after == blocked.reset and refused.value.message
    # The window the refusal names ends no later than the first answer's.
    assert blocked.reset_at <= window.reset_at + 1
