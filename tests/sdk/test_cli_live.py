"""`sphnctl` as a subprocess against the live test server: --json parsed, exit codes checked."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from marketplace.deployments import services as deployments
from marketplace.models import Deployment
from tests.deployments import conftest as deployments_conftest
from tests.deployments.conftest import fund, spec_text
from tests.factories import make_user
from tests.sdk import test_client_live as client_tests
from tests.sdk.test_client_live import api_key

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
market = deployments_conftest.market
owner = client_tests.owner
_sqlite_reads_do_not_wait = client_tests._sqlite_reads_do_not_wait
SPHNCTL = Path(sys.executable).parent / "sphnctl"


@pytest.fixture
def run(live_server, tmp_path):
    """sphnctl with its own config dir and no key from the environment."""

    def run(
        *args: str,
        key: str | None = None,
        env: dict[str, str] | None = None,
        server: str | None = None,
        plain: bool = False,
    ):
        command = [str(SPHNCTL), "--server", server or live_server.url, *([] if plain else ["--json"])]
        if key:
            command += ["--api-key", key]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SPHERON_")}
        environment |= {"SPHERON_CONFIG_DIR": str(tmp_path / "config"), **(env or {})}
        done = subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=120, env=environment, cwd=tmp_path
        )
        return done

    return run


def parsed(done: subprocess.CompletedProcess) -> object:
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def test_login_stores_the_key_owner_only_and_whoami_uses_it(run, owner, tmp_path):
    key = api_key(owner)
    done = run("login", "--key", key)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "config" / "config.json"
    assert parsed(done)["config_path"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["api_key"] == key
    who = run("whoami")
    assert who.returncode == 0, who.stderr
    assert parsed(who)["key_source"] == "config" and parsed(who)["balance"]["available"] == "100.000000"
    assert parsed(who)["email"] == owner.email and key.startswith(parsed(who)["key_prefix"])
    assert parsed(who)["scopes"] == ["full"]
    # SPHERON_API_KEY wins over the stored key: a wrong one is an auth error (exit 4)
    wrong = run("balance", env={"SPHERON_API_KEY": "sph_wrong"})
    assert wrong.returncode == 4
    assert parsed(wrong)["error"]["type"] == "AuthError"
    bad_login = run("login", "--key", "sph_wrong")
    assert bad_login.returncode == 4
    assert json.loads(path.read_text())["api_key"] == key  # a refused key is not stored


def test_offers_search_each_operator_and_sort(run, owner, market):
    key = api_key(owner)
    cheap, good, dear, h100 = (market[name].id for name in ("cheap", "good", "dear", "h100"))

    def found(*args: str) -> list[int]:
        done = run("offers", "search", *args, key=key)
        assert done.returncode == 0, done.stderr
        return [offer["node_id"] for offer in parsed(done)]

    assert set(found("gpu_model=rtx4090 vram>=24 region in [us-east,eu-west] uptime>0.98")) == {dear}
    assert set(found("gpu_model!=rtx4090")) == {h100}
    assert set(found("uptime<0.99")) == {cheap, h100}
    assert set(found("uptime<=0.99 gpus>1")) == {h100}
    assert set(found("region notin [us-east]")) == {good, dear}
    assert set(found("region", "in", "[us-west]")) == {good}  # the query may come as several words
    assert found("-o", "price-")[0] == h100
    assert found("gpu_model=rtx4090", "-o", "price")[0] == cheap
    assert found("-o", "uptime-", "-n", "2") == [good, dear]


def test_bad_queries_are_usage_errors_listing_the_valid_choices(run, owner, market):
    key = api_key(owner)
    field = run("offers", "search", "colour=red", key=key)
    assert field.returncode == 2
    assert "valid fields: gpu_model, vram" in parsed(field)["error"]["message"]
    operator = run("offers", "search", "vram~=24", key=key)
    assert operator.returncode == 2 and "= != < <= > >= in notin" in parsed(operator)["error"]["message"]
    sort = run("offers", "search", "-o", "colour", key=key)
    assert sort.returncode == 2 and "price" in parsed(sort)["error"]["message"]
    option = run("offers", "search", "--no-such-option", key=key)
    assert option.returncode == 2


def test_deployment_dry_run_create_get_events_logs_close(run, owner, market, tmp_path):
    key = api_key(owner)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(price="0.50", duration="2h"))
    dry = run("deployment", "create", str(spec), "--dry-run", key=key)
    assert dry.returncode == 0, dry.stderr
    assert parsed(dry)["estimate"]["hold"] == "1.000000" and parsed(dry)["enough_credits"] is True
    assert not Deployment.objects.exists()
    created = run("deployment", "create", str(spec), key=key)
    assert created.returncode == 0, created.stderr
    deployment_id = parsed(created)["id"]
    deployment = Deployment.objects.get(id=deployment_id)
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    deployments.lease_events(
        lease.node_id, lease.id, [{"type": "log", "stream": "stdout", "lines": ["l1", "l2", "l3"]}]
    )

    got = run("deployment", "get", str(deployment_id), key=key)
    assert got.returncode == 0 and parsed(got)["status"] == "matched"
    listed = run("deployment", "list", key=key)
    assert [item["id"] for item in parsed(listed)] == [deployment_id]
    logs = run("deployment", "logs", str(deployment_id), key=key)
    assert [json.loads(line)["line"] for line in logs.stdout.splitlines()] == ["l1", "l2", "l3"]
    tail = run("deployment", "logs", str(deployment_id), "--tail", "1", key=key)
    assert [json.loads(line)["line"] for line in tail.stdout.splitlines()] == ["l3"]
    verified = run("deployment", "verify", str(deployment_id), key=key)
    assert verified.returncode == 0 and parsed(verified)["ok"] is True
    closed = run("deployment", "close", str(deployment_id), key=key)
    assert closed.returncode == 0 and parsed(closed)["status"] == "closed"
    events = run("deployment", "events", str(deployment_id), key=key)
    kinds = [event["kind"] for event in parsed(events)]
    assert kinds[0] == "created" and kinds[-1] == "closed"
    followed = run("deployment", "logs", str(deployment_id), "-f", "--poll", "0.2", key=key)
    assert followed.returncode == 0  # ends by itself: the deployment has closed
    assert [json.loads(line)["line"] for line in followed.stdout.splitlines()] == ["l1", "l2", "l3"]


def test_create_wait_shows_progress_until_running(run, owner, market, tmp_path):
    key = api_key(owner)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(duration="1h"))

    def agent() -> None:  # what matching and the node's agent do meanwhile
        deadline = time.monotonic() + 60
        while not Deployment.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        deployment = Deployment.objects.get()
        lease = deployments.match_order(order_id=deployment.orders.get().id).lease
        deployments.lease_events(lease.node_id, lease.id, [{"type": "running"}])

    helper = threading.Thread(target=agent)
    helper.start()
    done = run("deployment", "create", str(spec), "--wait", "--wait-timeout", "60", key=key)
    helper.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert parsed(done)["status"] == "running" and parsed(done)["lease"]["agent_state"] == "running"


def test_exit_codes_not_found_auth_funds_network(run, owner, market, tmp_path, live_server):
    key = api_key(owner)
    missing = run("deployment", "get", "987654", key=key)
    assert missing.returncode == 3 and parsed(missing)["error"]["status"] == 404
    assert run("balance").returncode == 4  # no key anywhere
    assert run("provider", "nodes", key=key).returncode == 4  # not a provider: 403
    poor = make_user(email="cli-poor@example.test", is_developer=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text())
    broke = run("deployment", "create", str(spec), key=api_key(poor))
    assert broke.returncode == 5 and parsed(broke)["error"]["extra"]["top_up_url"]
    dry = run("deployment", "create", str(spec), "--dry-run", key=api_key(poor))
    assert dry.returncode == 5 and parsed(dry)["enough_credits"] is False
    spec.write_text(spec_text().replace("gpu: {units: 1", "gpu: {units: 0"))
    invalid = run("deployment", "create", str(spec), key=key)
    assert invalid.returncode == 2
    assert parsed(invalid)["error"]["fields"][0]["field"] == "services.app.resources.gpu.units"
    down = run("balance", key=key, server="http://127.0.0.1:9")
    assert down.returncode == 6 and parsed(down)["error"]["type"] == "NetworkError"
    fund(owner, 1)
    balance = run("balance", key=key)
    assert balance.returncode == 0 and parsed(balance)["available"] == "101.000000"


def test_provider_stake_and_earnings(run):
    from providers import services as provider_services
    from tests.factories import make_node, make_provider

    profile = make_provider(display_name="CLI Staker")
    make_node(provider=profile, name="rig")
    provider_services.stake_record(provider=profile, kind="stake", amount="250.5", reason="cli test")
    key = api_key(profile.user)
    stake = run("provider", "stake", key=key)
    assert stake.returncode == 0, stake.stderr
    assert parsed(stake)["staked_spon"] == "250.5" and parsed(stake)["history"][0]["reason"] == "cli test"
    earned = run("provider", "earnings", "--days", "7", key=key)
    assert earned.returncode == 0 and len(parsed(earned)["items"]) == 7
    assert run("provider", "earnings", "--days", "91", key=key).returncode == 2  # refused before a request
    assert run("provider", "earnings", "--node", "987654", key=key).returncode == 3
    table = run_plain(run, "provider", "stake", key=key)
    assert "250.5" in table.stdout and "cli test" in table.stdout


def run_plain(run, *args: str, key: str):
    """sphnctl without --json: what a person reads."""
    done = run(*args, key=key, env={"COLUMNS": "200"}, plain=True)
    assert done.returncode == 0, done.stderr
    return done


def test_templates_list_get_render_and_deploy(run, owner, market, tmp_path):
    key = api_key(owner)
    listed = run("templates", "list", key=key)
    assert "jupyter-pytorch" in {item["slug"] for item in parsed(listed)}
    got = run("templates", "get", "jupyter-pytorch", key=key)
    assert parsed(got)["env_vars"][0]["name"] == "JUPYTER_TOKEN"
    spec = run_plain(run, "templates", "render", "jupyter-pytorch", "-e", "JUPYTER_TOKEN=s3cret", key=key)
    assert f"node: {market['cheap'].id}" in spec.stdout and "JUPYTER_TOKEN" in spec.stdout
    assert f"Cheapest fit: node {market['cheap'].id}" in spec.stderr
    # The printed spec is a spec: deploy it as written.
    (tmp_path / "jupyter.yaml").write_text(spec.stdout)
    dry = run("deployment", "create", str(tmp_path / "jupyter.yaml"), "--dry-run", key=key)
    assert dry.returncode == 0 and parsed(dry)["valid"] is True
    rendered = run("templates", "render", "jupyter-pytorch", "-e", "JUPYTER_TOKEN=s3cret", key=key)
    assert parsed(rendered)["offer"]["node_id"] == market["cheap"].id
    deployed = run("templates", "render", "jupyter-pytorch", "-e", "JUPYTER_TOKEN=s3cret", "--deploy", key=key)
    assert deployed.returncode == 0, deployed.stderr
    deployment = Deployment.objects.get(id=parsed(deployed)["id"])
    assert deployment.spec["node"] == market["cheap"].id
    missing = run("templates", "render", "ubuntu-ssh", key=key)
    assert missing.returncode == 2 and parsed(missing)["error"]["fields"][0]["field"] == "env.SSH_PUBLIC_KEY"
    assert run("templates", "render", "jupyter-pytorch", "-e", "NOEQUALS", key=key).returncode == 2
    assert run("templates", "get", "no-such-template", key=key).returncode == 3
    # Nothing fits the node asked for: the spec and the reason, and --deploy refuses.
    h100 = str(market["h100"].id)
    ssh = ["-e", "SSH_PUBLIC_KEY=ssh-ed25519 AAAA x"]
    nothing = run("templates", "render", "ubuntu-ssh", *ssh, "--node", str(market["cheap"].id), key=key)
    assert nothing.returncode == 0 and parsed(nothing)["pinned_spec"] is None and parsed(nothing)["message"]
    refused = run("templates", "render", "ubuntu-ssh", *ssh, "--node", str(market["cheap"].id), "--deploy", key=key)
    assert refused.returncode == 1 and "Nothing to deploy" in parsed(refused)["error"]["message"]
    assert run("templates", "render", "ubuntu-ssh", *ssh, "--node", h100, key=key).returncode == 0


def test_topup_card_prints_the_page_link_with_the_amount(run, owner, live_server):
    done = run("topup", "card", "--amount", "25")
    assert done.returncode == 0, done.stderr  # a link needs no key
    assert parsed(done) == {"amount": "25.00", "url": f"{live_server.url}/billing/topup/?amount=25.00"}
    for bad in ("1.234", "-5", "abc", "0", "1e3"):
        assert run("topup", "card", "--amount", bad).returncode == 2, bad
    # --intent starts the payment through the API: without Stripe here, the server's 503 is exit 6.
    intent = run("topup", "card", "--amount", "25", "--intent", key=api_key(owner))
    assert intent.returncode == 6 and parsed(intent)["error"]["status"] == 503


def test_topup_crypto_prints_the_deposit_instructions(run, owner, live_server, settings):
    from chain.registry import ChainAddresses, registry_sync
    from chain.services import reference_for

    receiver = "0x" + "22" * 20
    registry_sync(devnet=True, keys=("base",), addresses={"base": ChainAddresses(receiver=receiver)})
    key = api_key(owner)
    done = run("topup", "crypto", "--chain", "base", key=key)
    assert done.returncode == 0, done.stderr
    data = parsed(done)
    assert data["reference"] == reference_for(owner).ref
    assert data["pay_to"].lower() == receiver and data["chain_id"] == 8453 and "deposit(reference)" in data["how"]
    assert {token["symbol"] for token in data["tokens"]} >= {"ETH"}
    one = parsed(run("topup", "crypto", "--chain", "base", "--token", "eth", "--usd", "20", key=key))
    assert [token["symbol"] for token in one["tokens"]] == ["ETH"]
    link = one["tokens"][0]["page_url"]
    assert link == f"{live_server.url}/billing/topup/?chain=base&token=ETH&usd=20.00#pay-base-eth"
    unknown = run("topup", "crypto", "--chain", "dogecoin", key=key)
    assert unknown.returncode == 2 and "base" in parsed(unknown)["error"]["message"]
    assert run("topup", "crypto", "--chain", "base", "--token", "DOGE", key=key).returncode == 2
    deposits = run("deposits", key=key)
    assert deposits.returncode == 0 and parsed(deposits) == []


def test_fizz_passes_its_arguments_through(run, tmp_path):
    version = run("fizz", "version", "--json")
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["version"]
    status = run("fizz", "status", "--config-dir", str(tmp_path / "fizz"), "--json")
    assert (
        status.returncode
        == subprocess.run(
            [str(SPHNCTL.parent / "fizz"), "status", "--config-dir", str(tmp_path / "fizz"), "--json"],
            capture_output=True,
            text=True,
        ).returncode
    )
    usage = run("fizz", "no-such-command")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    helped = run("fizz", "--help")
    assert helped.returncode == 0 and "usage: fizz" in helped.stdout


def test_the_rate_limit_of_a_refused_call_is_in_the_json_error(run, owner, settings):
    settings.API_KEY_RATE_LIMITS = {
        "read": "1/hour",
        "write": "120/min",
        "deploy": "30/min",
    }  # Retry-After beyond the wait
    key = api_key(owner)
    assert run("balance", key=key).returncode == 0
    limited = run("balance", key=key)
    assert limited.returncode == 6
    error = parsed(limited)["error"]
    assert error["type"] == "RateLimited" and error["rate_limit"]["remaining"] == 0
    assert error["rate_limit"]["policy"] == "read" and error["rate_limit"]["limit"] == 1
