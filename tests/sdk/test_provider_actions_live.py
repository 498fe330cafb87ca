"""A provider's list prices, payouts, slashes and appeals, and the re-deploy of a pinned deployment,
from Python (spheron_sdk.client) and from `sphnctl` (a subprocess), against the live test server:
no mocked HTTP. --json output is parsed; exit codes are the CLI's (2 usage/400/422, 3 not found,
4 auth, 5 funds, 1 a 409 with the server's message)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from spheron_sdk.client import Client
from spheron_sdk.errors import Conflict, InsufficientFunds, NotFound, PermissionDenied, ValidationError

from accounts.api_keys import api_key_create
from billing.models import PayoutRequest
from chain.registry import ChainAddresses, registry_sync
from marketplace.deployments import services as deployments
from marketplace.models import Deployment, DeploymentStatus
from providers import services as provider_services
from providers.models import Node, ProviderGpuPrice, ProviderProfile, SlashAppeal
from providers.slashing import slash_decide
from tests.deployments import conftest as deployments_conftest
from tests.deployments.conftest import fund, spec_text
from tests.deployments.test_failover import pinned_spec, running_lease
from tests.factories import make_user
from tests.providers.test_provider_actions_api import EVM, link_payout_address, settle
from tests.sdk import test_client_live as client_tests
from tests.sdk.test_cli_live import parsed, run  # noqa: F401  (run: the sphnctl fixture)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
market = deployments_conftest.market  # three RTX 4090 fizz nodes and an H100 box
owner = client_tests.owner  # a developer funded with $100
_sqlite_reads_do_not_wait = client_tests._sqlite_reads_do_not_wait
USD = 1_000_000
SPON = 10**18
UNITS = {"cpu_per_core_month": "0.80", "memory_per_gb_month": "0.12", "storage_per_gb_month": "0.015"}


def key(user, *scopes: str) -> str:
    _key, raw = api_key_create(user=user, label="provider actions tests", scopes=list(scopes) or ["full"])
    return raw


def onboard(name: str) -> ProviderProfile:
    """A provider with 2,000 $SPON of stake recorded by an admin (no stake address: slashes apply at once)."""
    profile = provider_services.provider_onboard(
        user=make_user(is_provider=True), display_name=name, payout_evm_address=EVM, default_region="us-east"
    )
    provider_services.stake_record(provider=profile, kind="stake", amount="2000", reason="test stake")
    return profile


@pytest.fixture
def provider(transactional_db, settings) -> ProviderProfile:
    settings.STAKING_CONTRACT_ADDRESS = ""
    return onboard("Acme GPUs")


@pytest.fixture
def sdk(live_server, provider):
    with Client(live_server.url, key(provider.user), timeout=20, retries=0) as client:
        yield client


@pytest.fixture
def earning(provider, settings):
    """$100 of settled earnings, a linked payout address; Base (with $SPON) and Arbitrum (without)."""
    settings.PAYOUT_MIN_USD = Decimal("1")
    settings.PAYOUT_APPROVAL_THRESHOLD_USD = Decimal("50")
    registry_sync(
        devnet=True,
        keys=("base",),
        addresses={"base": ChainAddresses(receiver="0x" + "11" * 20, spon_token="0x" + "22" * 20)},
    )
    registry_sync(devnet=True, keys=("arbitrum",), addresses={"arbitrum": ChainAddresses(receiver="0x" + "33" * 20)})
    settle(provider.user, 100 * USD)
    link_payout_address(provider.user)
    return provider


def stored_prices(provider: ProviderProfile) -> dict[str, int]:
    return dict(ProviderGpuPrice.objects.filter(provider=provider).values_list("gpu_model_id", "price_per_hour_micros"))


def unit_micros(provider: ProviderProfile) -> tuple[int, int, int]:
    provider.refresh_from_db()
    return (
        provider.cpu_price_per_core_month_micros,
        provider.memory_price_per_gb_month_micros,
        provider.storage_price_per_gb_month_micros,
    )


def offered(data: dict) -> dict[str, str]:
    return {row["gpu_model"]: row["price_per_hour"] for row in data["gpu_prices"] if row["price_per_hour"]}


def pinned_deployment(user, market) -> Deployment:
    """A running deployment of `user` pinned to an RTX 4090 node of the market with a free GPU."""
    nodes = Node.objects.filter(id__in=[market[name].id for name in ("cheap", "good", "dear")], available_gpus__gt=0)
    node = nodes.order_by("id").first()
    assert node is not None and node.is_listed
    lease = running_lease(user, pinned_spec(node.id))
    assert lease.node_id == node.id
    return lease.deployment


# --- the Python SDK: prices --------------------------------------------------------------------------


def test_sdk_prices_replace_set_one_unset_and_units(sdk, provider):
    ProviderGpuPrice.objects.create(provider=provider, gpu_model_id="a6000", price_per_hour_micros=1_500_000)
    shown = sdk.provider.prices()
    assert "rtx4090" in {row["gpu_model"] for row in shown["gpu_prices"]} and shown["offered"] == 1
    assert offered(shown) == {"a6000": "1.500000"}
    assert shown["cpu_per_core_month"]["fizz_price"] == "0.750000"

    # PUT replaces the list: a6000, left out, is no longer offered.
    replaced = sdk.provider.prices_update({"rtx4090": "0.35", "h100": Decimal("2.10")}, **UNITS)
    assert offered(replaced) == {"rtx4090": "0.350000", "h100": "2.100000"} and replaced["offered"] == 2
    assert stored_prices(provider) == {"rtx4090": 350_000, "h100": 2_100_000}
    assert unit_micros(provider) == (800_000, 120_000, 15_000)

    # price_set changes one model and keeps the rest (a PATCH).
    one = sdk.provider.price_set("a100-80g", "1.25")
    assert stored_prices(provider) == {"rtx4090": 350_000, "h100": 2_100_000, "a100-80g": 1_250_000}
    assert offered(one)["a100-80g"] == "1.250000"
    sdk.provider.price_set("rtx4090", "0.40")
    assert stored_prices(provider)["rtx4090"] == 400_000
    sdk.provider.price_set("h100", None)
    assert stored_prices(provider) == {"rtx4090": 400_000, "a100-80g": 1_250_000}
    assert unit_micros(provider) == (800_000, 120_000, 15_000)  # kept by every price_set

    units = sdk.provider.unit_prices_set(memory_per_gb_month="0.2")
    assert units["memory_per_gb_month"]["price"] == "0.200000"
    assert unit_micros(provider) == (800_000, 200_000, 15_000)
    assert stored_prices(provider) == {"rtx4090": 400_000, "a100-80g": 1_250_000}

    both = sdk.provider.prices_patch({"a100-80g": None, "l4": "0.5"}, cpu_per_core_month="0.9")
    assert offered(both) == {"rtx4090": "0.400000", "l4": "0.500000"}
    assert unit_micros(provider) == (900_000, 200_000, 15_000)


def test_sdk_a_bad_price_names_its_field_and_nothing_changes(sdk, provider):
    sdk.provider.prices_update({"rtx4090": "0.35"}, **UNITS)
    with pytest.raises(ValidationError, match="above the \\$100 limit") as dear:
        sdk.provider.price_set("rtx4090", "100.01")
    assert dear.value.status == 400 and dear.value.fields[0]["field"] == "gpu_prices.rtx4090"
    assert "gpu_prices.rtx4090" in dear.value.message
    with pytest.raises(ValidationError, match="Unknown GPU model 'rtx9999'") as unknown:
        sdk.provider.price_set("rtx9999", "1")
    assert unknown.value.fields[0]["field"] == "gpu_prices.rtx9999"
    with pytest.raises(ValidationError) as unit:
        sdk.provider.unit_prices_set(cpu_per_core_month="cheap")
    assert unit.value.fields[0]["field"] == "cpu_per_core_month"
    assert stored_prices(provider) == {"rtx4090": 350_000} and unit_micros(provider) == (800_000, 120_000, 15_000)


def test_sdk_prices_are_for_providers_and_a_read_key_may_only_look(live_server, provider, owner):
    with Client(live_server.url, key(owner), retries=0) as renter:
        with pytest.raises(PermissionDenied, match="Become a provider first"):
            renter.provider.prices()
    with Client(live_server.url, key(provider.user, "read"), retries=0) as reader:
        assert reader.provider.prices()["offered"] == 0
        with pytest.raises(PermissionDenied, match="lacks the 'provider' scope"):
            reader.provider.price_set("rtx4090", "0.30")
    assert not ProviderGpuPrice.objects.exists()


# --- the Python SDK: payouts -------------------------------------------------------------------------


def test_sdk_payouts_request_list_pages_and_refusals(sdk, earning):
    balance = sdk.provider.payout_balance()
    assert (balance["settled"], balance["payable"], balance["payout_address"]) == ("100.000000", "100.000000", EVM)
    assert list(sdk.provider.payouts()) == []

    first = sdk.provider.payout_request("25.50", "base")
    assert (first["amount_micros"], first["status"], first["needs_approval"]) == (25_500_000, "approved", False)
    assert (first["chain"], first["chain_id"], first["destination"]) == ("base", 8453, EVM)
    second = sdk.provider.payout_request(Decimal("60"), "base", "SPON")
    assert (second["status"], second["token_symbol"]) == ("requested", "SPON")

    assert [item["id"] for item in sdk.provider.payouts(page_size=1)] == [second["id"], first["id"]]
    page = sdk.provider.payouts_page(limit=1)
    assert [item["id"] for item in page["items"]] == [second["id"]] and page["next_cursor"]
    assert page["balance"]["requested"] == "85.500000" and page["balance"]["payable_micros"] == 14_500_000

    with pytest.raises(Conflict, match="You can request at most") as over:
        sdk.provider.payout_request("14.51", "base")
    assert over.value.extra["payable_micros"] == 14_500_000
    with pytest.raises(ValidationError, match="There is no chain 'nowhere'") as chain:
        sdk.provider.payout_request("5", "nowhere")
    assert chain.value.fields[0]["field"] == "chain"
    with pytest.raises(ValidationError, match="SPON is not on") as token:
        sdk.provider.payout_request("5", "arbitrum", "SPON")
    assert token.value.fields[0]["field"] == "token"
    with pytest.raises(ValidationError) as amount:
        sdk.provider.payout_request("1.005", "base")
    assert amount.value.status == 422 and amount.value.fields[0]["field"] == "amount"
    assert PayoutRequest.objects.count() == 2


# --- the Python SDK: slashes and appeals -------------------------------------------------------------


def test_sdk_slashes_list_detail_appeal_once_and_anothers_is_not_found(sdk, provider, live_server):
    slashes = [
        slash_decide(provider=provider, amount_spon=str(n + 1), reason=f"slash {n}", reference=f"test:sdk-{n}")
        for n in range(3)
    ]
    assert {slash.status for slash in slashes} == {"off_chain"}
    listed = list(sdk.provider.slashes(page_size=1))
    assert sorted(item["id"] for item in listed) == sorted(slash.id for slash in slashes)
    assert all(item["can_appeal"] and item["appeal"] is None for item in listed)

    detail = sdk.provider.slash(slashes[0].id)
    assert (detail["amount"], detail["amount_spon"], detail["reason"]) == (str(SPON), "1", "slash 0")
    assert detail["evidence"]["kind"] == "" and detail["url"].endswith(f"/provider/stake/slashes/{slashes[0].id}/")

    appealed = sdk.provider.slash_appeal(slashes[0].id, "The node was up: see my logs.")
    assert appealed["can_appeal"] is False and appealed["appeal"]["status"] == "open"
    assert appealed["appeal"]["text"] == "The node was up: see my logs."
    with pytest.raises(Conflict, match="already appealed"):
        sdk.provider.slash_appeal(slashes[0].id, "again")
    with pytest.raises(ValidationError, match="Write your appeal") as blank:
        sdk.provider.slash_appeal(slashes[1].id, "   ")
    assert blank.value.fields[0]["field"] == "text"

    other = onboard("Other Co")
    theirs = slash_decide(provider=other, amount_spon="5", reason="theirs", reference="test:other")
    with pytest.raises(NotFound, match="No such slash"):
        sdk.provider.slash(theirs.id)
    with pytest.raises(NotFound):
        sdk.provider.slash_appeal(theirs.id, "not mine")
    assert SlashAppeal.objects.count() == 1


# --- the Python SDK: redeploy --------------------------------------------------------------------------


def test_sdk_redeploy_a_pinned_deployment_and_the_refusals(live_server, owner, market):
    pinned = pinned_deployment(owner, market)
    with Client(live_server.url, key(owner), retries=0) as api:
        new = api.deployments.redeploy(pinned.id)
        assert new["redeployed_from"] == pinned.id and new["status"] == "pending"
        assert new["estimate"]["hold_micros"] == 12 * USD and new["url"].endswith(f"/deployments/{new['id']}/")
        assert api.deployments.get(new["id"])["spec"]["node"] is None
        assert api.deployments.get(pinned.id)["status"] == "closed"

        unpinned = running_lease(owner).deployment
        with pytest.raises(Conflict, match="Only a deployment pinned to one node") as refused:
            api.deployments.redeploy(unpinned.id)
        assert refused.value.status == 409

        outsider = make_user(is_developer=True)
        fund(outsider)
        with Client(live_server.url, key(outsider), retries=0) as other, pytest.raises(NotFound):
            other.deployments.redeploy(new["id"])

    poor = make_user(is_developer=True)
    fund(poor)
    old = deployments.deployment_create(user=poor, source=pinned_spec(market["dear"].id))
    deployments.deployment_close(deployment=old)
    deployments.deployment_create(user=poor, source=spec_text(price="3.90"))  # leaves less than the $12 hold
    with Client(live_server.url, key(poor), retries=0) as api, pytest.raises(InsufficientFunds) as broke:
        api.deployments.redeploy(old.id)
    assert broke.value.status == 402 and broke.value.top_up_url
    assert Deployment.objects.filter(owner=poor).count() == 2


# --- sphnctl -------------------------------------------------------------------------------------------


def plain(run, *args: str, key: str):  # noqa: F811
    done = run(*args, key=key, env={"COLUMNS": "200"}, plain=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_prices_show_set_unset_set_units_and_errors(run, provider, owner):  # noqa: F811
    full = key(provider.user)
    shown = run("provider", "prices", key=full)  # the group alone shows
    assert shown.returncode == 0, shown.stderr
    assert parsed(shown)["offered"] == 0 and len(parsed(shown)["gpu_prices"]) > 20

    done = run("provider", "prices", "set", "rtx4090", "0.35", key=full)
    assert done.returncode == 0, done.stderr
    assert offered(parsed(done)) == {"rtx4090": "0.350000"}
    assert run("provider", "prices", "set", "h100", "$2.10", key=full).returncode == 0
    units = run("provider", "prices", "set-units", "--cpu", "0.8", "--storage", "0.015", key=full)
    assert units.returncode == 0, units.stderr
    assert (parsed(units)["cpu_per_core_month"]["price"], parsed(units)["storage_per_gb_month"]["price"]) == (
        "0.800000",
        "0.015000",
    )
    assert stored_prices(provider) == {"rtx4090": 350_000, "h100": 2_100_000}
    unset = run("provider", "prices", "unset", "h100", key=full)
    assert unset.returncode == 0 and offered(parsed(unset)) == {"rtx4090": "0.350000"}
    assert stored_prices(provider) == {"rtx4090": 350_000}
    assert unit_micros(provider)[0] == 800_000 and unit_micros(provider)[2] == 15_000

    table = plain(run, "provider", "prices", "show", key=full)
    assert "rtx4090" in table and "0.350000" in table and "h100" not in table and "CPU core" in table
    assert "h100" in plain(run, "provider", "prices", "show", "--all", key=full)

    # A bad price: exit 2, the server's message naming the field; nothing written.
    dear = run("provider", "prices", "set", "rtx4090", "100.01", key=full)
    assert dear.returncode == 2
    assert parsed(dear)["error"]["fields"][0]["field"] == "gpu_prices.rtx4090"
    assert "gpu_prices.rtx4090" in parsed(dear)["error"]["message"]
    words = run("provider", "prices", "set", "rtx4090", "cheap", key=full, plain=True)
    assert words.returncode == 2 and "gpu_prices.rtx4090" in words.stderr
    unknown = run("provider", "prices", "set", "rtx9999", "1", key=full)
    assert unknown.returncode == 2 and parsed(unknown)["error"]["fields"][0]["field"] == "gpu_prices.rtx9999"
    cpu = run("provider", "prices", "set-units", "--cpu", "0", key=full)
    assert cpu.returncode == 2 and parsed(cpu)["error"]["fields"][0]["field"] == "cpu_per_core_month"
    assert run("provider", "prices", "set-units", key=full).returncode == 2  # nothing to change
    assert run("provider", "prices", "set", "rtx4090", " ", key=full).returncode == 2
    assert run("provider", "prices", "set", "rtx4090", key=full).returncode == 2  # PRICE missing
    assert stored_prices(provider) == {"rtx4090": 350_000}

    # A read key may look, not change (exit 4); a renter is not a provider (exit 4).
    reader = key(provider.user, "read")
    assert run("provider", "prices", "show", key=reader).returncode == 0
    denied = run("provider", "prices", "set", "rtx4090", "0.30", key=reader)
    assert denied.returncode == 4 and parsed(denied)["error"]["extra"]["required_scope"] == "provider"
    assert run("provider", "prices", key=key(owner)).returncode == 4
    assert stored_prices(provider) == {"rtx4090": 350_000}


def test_cli_payouts_list_request_and_errors(run, earning):  # noqa: F811
    full = key(earning.user)
    empty = run("provider", "payouts", key=full)  # the group alone lists
    assert empty.returncode == 0, empty.stderr
    assert parsed(empty)["items"] == [] and parsed(empty)["balance"]["payable"] == "100.000000"

    done = run("provider", "payouts", "request", "--amount", "25.50", "--chain", "base", key=full)
    assert done.returncode == 0, done.stderr
    assert (parsed(done)["amount"], parsed(done)["status"], parsed(done)["chain"]) == ("25.500000", "approved", "base")
    spon = run("provider", "payouts", "request", "--amount", "$60", "--chain", "base", "--token", "SPON", key=full)
    assert spon.returncode == 0 and parsed(spon)["status"] == "requested" and parsed(spon)["needs_approval"] is True

    listed = run("provider", "payouts", "list", key=full)
    assert [item["id"] for item in parsed(listed)["items"]] == [parsed(spon)["id"], parsed(done)["id"]]
    assert parsed(listed)["balance"]["payable"] == "14.500000"
    assert [item["id"] for item in parsed(run("provider", "payouts", "list", "-n", "1", key=full))["items"]] == [
        parsed(spon)["id"]
    ]
    table = plain(run, "provider", "payouts", "list", key=full)
    assert "14.500000" in table and "waits for an admin" in table and EVM in table

    over = run("provider", "payouts", "request", "--amount", "14.51", "--chain", "base", key=full)
    assert over.returncode == 1 and parsed(over)["error"]["status"] == 409
    assert "You can request at most" in parsed(over)["error"]["message"]
    chain = run("provider", "payouts", "request", "--amount", "5", "--chain", "nowhere", key=full)
    assert chain.returncode == 2 and parsed(chain)["error"]["fields"][0]["field"] == "chain"
    token = run("provider", "payouts", "request", "--amount", "5", "--chain", "base", "--token", "DOGE", key=full)
    assert token.returncode == 2 and parsed(token)["error"]["fields"][0]["field"] == "token"
    assert run("provider", "payouts", "request", "--amount", "1.005", "--chain", "base", key=full).returncode == 2
    assert run("provider", "payouts", "request", "--amount", "5", key=full).returncode == 2  # --chain missing
    read = run("provider", "payouts", "request", "--amount", "5", "--chain", "base", key=key(earning.user, "read"))
    assert read.returncode == 4
    assert PayoutRequest.objects.count() == 2


def test_cli_slashes_list_get_appeal_and_errors(run, provider):  # noqa: F811
    full = key(provider.user)
    slash = slash_decide(provider=provider, amount_spon="100", reason="Fake GPUs", reference="test:cli")
    listed = run("provider", "slashes", key=full)  # the group alone lists
    assert listed.returncode == 0, listed.stderr
    (item,) = parsed(listed)
    assert (item["id"], item["amount_spon"], item["status"], item["can_appeal"]) == (slash.id, "100", "off_chain", True)
    got = run("provider", "slashes", "get", str(slash.id), key=full)
    assert got.returncode == 0 and parsed(got)["evidence"]["kind"] == "" and parsed(got)["reference"] == "test:cli"
    assert "Fake GPUs" in plain(run, "provider", "slashes", "list", key=full)

    appealed = run("provider", "slashes", "appeal", str(slash.id), "--text", "My node was up.", key=full)
    assert appealed.returncode == 0, appealed.stderr
    assert parsed(appealed)["appeal"]["status"] == "open" and parsed(appealed)["can_appeal"] is False
    assert SlashAppeal.objects.get().text == "My node was up."
    detail = plain(run, "provider", "slashes", "get", str(slash.id), key=full)
    assert "My node was up." in detail and "open" in detail

    again = run("provider", "slashes", "appeal", str(slash.id), "--text", "again", key=full)
    assert again.returncode == 1 and parsed(again)["error"]["message"] == "You have already appealed this slash."
    theirs = slash_decide(provider=onboard("Other Co"), amount_spon="5", reason="theirs", reference="test:other")
    missing = run("provider", "slashes", "get", str(theirs.id), key=full)
    assert missing.returncode == 3 and parsed(missing)["error"]["message"] == "No such slash."
    assert run("provider", "slashes", "appeal", str(theirs.id), "--text", "mine?", key=full).returncode == 3
    fresh = slash_decide(provider=provider, amount_spon="1", reason="another", reference="test:cli-2")
    blank = run("provider", "slashes", "appeal", str(fresh.id), "--text", "  ", key=full)
    assert blank.returncode == 2 and parsed(blank)["error"]["fields"][0]["field"] == "text"
    assert run("provider", "slashes", "appeal", str(fresh.id), key=full).returncode == 2  # --text missing
    assert run("provider", "slashes", "get", "0", key=full).returncode == 2
    assert SlashAppeal.objects.count() == 1


def test_cli_redeploy_wait_unpinned_funds_and_not_found(run, owner, market):  # noqa: F811
    # Too little credit (exit 5): a pinned deployment (not matched: no node is taken), closed, then
    # another one that leaves less than the re-deploy's $12 hold.
    poor = make_user(is_developer=True)
    fund(poor)
    old = deployments.deployment_create(user=poor, source=pinned_spec(market["good"].id))
    deployments.deployment_close(deployment=old)
    deployments.deployment_create(user=poor, source=spec_text(price="3.90"))
    broke = run("deployment", "redeploy", str(old.id), key=key(poor))
    assert broke.returncode == 5 and parsed(broke)["error"]["extra"]["top_up_url"]
    assert Deployment.objects.filter(owner=poor).count() == 2

    full = key(owner)
    unpinned = deployments.deployment_create(user=owner, source=spec_text())
    refused = run("deployment", "redeploy", str(unpinned.id), key=full)
    assert refused.returncode == 1 and parsed(refused)["error"]["status"] == 409
    assert parsed(refused)["error"]["message"] == "Only a deployment pinned to one node is re-deployed this way."
    words = run("deployment", "redeploy", str(unpinned.id), key=full, plain=True)
    assert words.returncode == 1 and "Only a deployment pinned to one node" in words.stderr
    deployments.deployment_close(deployment=unpinned)
    assert not Deployment.objects.filter(owner=owner, status=DeploymentStatus.PENDING).exists()

    pinned = pinned_deployment(owner, market)

    def agent() -> None:  # what matching and the node's agent do with the new deployment
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = Deployment.objects.filter(owner=owner, status=DeploymentStatus.PENDING).first()
            if new is not None:
                lease = deployments.match_order(order_id=new.orders.get().id).lease
                deployments.lease_events(lease.node_id, lease.id, [{"type": "running"}])
                return
            time.sleep(0.1)

    helper = threading.Thread(target=agent)
    helper.start()
    waited = run("deployment", "redeploy", str(pinned.id), "--wait", "--wait-timeout", "60", key=full)
    helper.join(timeout=60)
    assert waited.returncode == 0, waited.stderr
    assert parsed(waited)["status"] == "running" and parsed(waited)["id"] != pinned.id
    assert parsed(waited)["spec"]["node"] is None
    pinned.refresh_from_db()
    assert pinned.status == DeploymentStatus.CLOSED

    again = run("deployment", "redeploy", str(pinned.id), key=full)  # a closed pinned one may go again
    assert again.returncode == 0, again.stderr
    assert parsed(again)["redeployed_from"] == pinned.id and parsed(again)["status"] == "pending"
    outsider = make_user(is_developer=True)
    fund(outsider)
    assert run("deployment", "redeploy", str(pinned.id), key=key(outsider)).returncode == 3
    assert run("deployment", "redeploy", "0", key=full).returncode == 2
