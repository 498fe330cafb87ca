"""From sign-up to a lease on chain, with no admin (issue 21's "Show").

A new provider signs up in the browser, makes a node token, and the real `fizz` agent registers a
one-GPU machine with it (a recorded nvidia-smi of an RTX 4090 stands in for the driver; the
workloads run as processes). The node is online but not matchable: no stake. The provider links a
stake address by signing in the browser, takes test $SPON from the devnet faucet, approves and
stakes from the stake page's buttons; once the stake is final the indexer counts it and the node
is matchable. A renter then deploys in the browser; the matchmaker places the deployment on that
node (the only one there is), the commitments pass and the sender put its commitment on the
LeaseRegistry of the home chain, the deployment page and the match proof say where, and
spheron_sdk verifies the proof against the chain with nothing but an RPC URL.

Replaced at the boundary: the wallet (`window.ethereum` answers eth_requestAccounts with dev account
3 and forwards everything else to anvil, where that account is unlocked: personal_sign and
eth_sendTransaction are signed there) and beat (no Celery runs in tests: the sweeper thread runs
the order sweep; the indexer, the commitments pass and the sender are called here, as their beat
tasks would call them, after blocks are mined to finality with evm_mine).
"""

from __future__ import annotations

import re
import shlex
import sys
import time

import pytest
from playwright.sync_api import Page, expect
from spheron_sdk.matching import verify_match

from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import ChainTransaction, TxStatus
from chain.sender import transactions_run
from marketplace.deployments.commitments import commitments_run
from marketplace.models import Lease
from providers.models import Node, NodeStatus, StakeEvent
from providers.stake_chain import stake_chain_index
from tests.deployments.conftest import fund
from tests.e2e.beat import order_sweeper, table_locked
from tests.e2e.login import log_in, sign_up, verified_user
from tests.e2e.wallet import install_wallet, sent_transactions, wallet_calls
from tests.integration.agents import Agent, wait_for
from tests.sdk.conftest import FIXTURES

pytestmark = [
    pytest.mark.usefixtures("live_sqlite_reads"),
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
PROVIDER_EMAIL = "grace@example.test"
PAYOUT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
STAKER = DEV_ACCOUNTS[3]  # the provider's wallet (unlocked on anvil)
FINALITY = 3  # the devnet's (CHAIN_DEVNET_FINALITY)
SLOW_MS = 30_000  # registration and a first heartbeat; matching; the agent starting the workload
TICKER = "import time; [print('tick', i, flush=True) or time.sleep(0.5) for i in range(600)]"


def spec(price: str) -> str:
    return f"""version: "2.0"
services:
  trainer:
    image: python:3.12-slim
    command: ["{sys.executable}", "-c", "{TICKER}"]
    resources:
      cpu: {{units: 1}}
      memory: {{size: 2Gi}}
      storage: [{{size: 1Gi}}]
      gpu: {{units: 1, model: [rtx4090]}}
    price: {{token: USD, amount: {price}}}
deployment:
  duration: 1h
  mode: fizz
  tiers: [community]
"""


@pytest.fixture
def home(home_chain, settings, live_server):
    """The home chain "base" as the devnet has it: anvil with Base's chain id, the contracts, the
    chain row, staking, the recorder's key in the environment (anvil's public key #0, as `make run`
    gives it), the faucet on (DEBUG and CHAIN_DEVNET), agents heartbeating every second."""
    node = home_chain(staking=True, commitments=True, finality=FINALITY, block_time_ms=1000)
    settings.DEBUG = True  # the faucet is refused otherwise
    settings.CHAIN_DEVNET = True
    settings.SITE_URL = live_server.url  # the domain the signed message names
    settings.NODE_HEARTBEAT_INTERVAL_SECONDS = 1
    settings.NODE_CHALLENGES_PER_HOUR = 0  # nothing random in a browser test
    return node


@pytest.fixture
def renter():
    user = verified_user("ada@example.test", name="Ada")
    fund(user, 20)
    return user


@pytest.fixture
def gpu_agent(tmp_path, agents):
    """`fizz start` on "a machine with one RTX 4090": nvidia-smi is a recorded one."""
    script = tmp_path / "nvidia-smi"
    query, full = FIXTURES / "nvidia-smi-rtx4090-query.csv", FIXTURES / "nvidia-smi-rtx4090.txt"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in\n  --query-gpu=*) cat {shlex.quote(str(query))} ;;\n  *) cat {shlex.quote(str(full))} ;;\nesac\n'
    )
    script.chmod(0o755)

    def start(server: str, token: str) -> Agent:
        return agents(server, token, machine="e2e-chain-onboarding", extra_env={"FIZZ_NVIDIA_SMI": str(script)}).start()

    return start


def _retry_locked(call, *, what: str):
    """A beat task's run, repeated when it meets SQLite's shared-cache lock (the sweeper and the live
    server write at the same time), as beat would run it again."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return call()
        except Exception as exc:
            if not table_locked(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _sign_up_as_provider(page: Page) -> None:
    sign_up(page, PROVIDER_EMAIL)
    page.get_by_test_id("nav-become-provider").click()
    page.wait_for_url("**/provider/onboarding/")
    expect(page.get_by_test_id("rentable-rules")).to_contain_text("200 $SPON for each GPU")
    page.fill("input[name=display_name]", "Grace's GPU")
    page.fill("input[name=payout_evm_address]", PAYOUT)
    page.select_option("select[name=default_region]", "us-east")
    page.get_by_role("button", name="Become a provider").click()
    page.wait_for_url("**/provider/")
    expect(page.get_by_test_id("nodes-empty")).to_contain_text("No nodes yet")


def _send_from_the_stake_page(page: Page, test_id: str, label: str) -> str:
    """Press a wallet button of the stake page; the transaction's hash once the page says it is mined."""
    page.get_by_test_id(test_id).click()
    message = page.get_by_test_id("stake-message")
    expect(message).to_contain_text(f"{label} mined (", timeout=SLOW_MS)
    return re.search(r"0x[0-9a-f]{64}", message.inner_text()).group(0)


def test_a_new_provider_stakes_from_the_browser_and_a_renters_lease_is_committed_on_chain(
    page: Page, live_server, home, renter, gpu_agent
):
    node = home
    install_wallet(page, STAKER.address, rpc=node.url)

    # 1. Sign up, confirm the e-mail address, become a provider.
    _sign_up_as_provider(page)

    # 2. A node token, and the real agent registers the GPU machine with it over HTTP.
    page.get_by_role("link", name="Add a machine").click()
    page.wait_for_url("**/provider/tokens/")
    page.fill("input[name=label]", "gpu box")
    page.get_by_role("button", name="Create token").click()
    raw_token = page.get_by_test_id("new-token").inner_text().strip()
    assert raw_token.startswith("fzt_")
    agent = gpu_agent(live_server.url, raw_token)
    try:
        machine = wait_for(
            lambda: Node.objects.filter(token__label="gpu box", status=NodeStatus.ONLINE).first(),
            timeout=SLOW_MS / 1000,
            what="the agent's node to come online",
        )
    except AssertionError:
        pytest.fail(f"agent output:\n{agent.output()}")
    assert (machine.gpu_model_id, machine.gpu_count, machine.is_simulated) == ("rtx4090", 1, False)
    assert Node.objects.count() == 1  # the only node there is: the renter's deployment can land only here

    # 3. Online, but not matchable: no stake. The dashboard and the stake page say so.
    page.get_by_role("link", name="Nodes", exact=True).click()
    page.wait_for_url("**/provider/")
    row = page.get_by_test_id("node-row")
    expect(row.get_by_test_id("node-status")).to_have_text("online", timeout=SLOW_MS)
    expect(page.get_by_test_id("stake-warning")).to_contain_text("Your stake is 200 $SPON short.")
    expect(page.get_by_test_id("stake-warning")).to_contain_text(f"Renters cannot be matched to {machine.name}")
    page.goto("/provider/stake/")
    expect(page.get_by_test_id("stake-required")).to_contain_text("200")
    need = page.get_by_test_id("stake-node-need")
    expect(need).to_have_count(1)
    expect(need).to_contain_text("no: not matched to renters")
    expect(page.get_by_test_id("stake-link")).to_contain_text("link a stake address")

    # 4. Link the stake address: one signature in the wallet, no transaction.
    page.get_by_test_id("stake-link").get_by_role("link").click()
    page.wait_for_url("**/account/wallets/")
    page.get_by_test_id("wallet-stake-button").click()
    expect(page.get_by_test_id("wallet-stake-message")).to_have_text(f"Linked {STAKER.address} as your stake address.")
    assert [call["method"] for call in wallet_calls(page)] == ["eth_requestAccounts", "eth_chainId", "personal_sign"]

    # 5. Test $SPON from the devnet faucet (the treasury pays; STAKER starts with none).
    spon = node.contract("SponToken")
    assert spon.functions.balanceOf(STAKER.address).call() == 0
    page.goto("/provider/stake/")
    expect(page.get_by_test_id("stake-address")).to_have_text(STAKER.address)
    expect(page.get_by_test_id("stake-chain-active")).to_have_text("0")
    page.get_by_test_id("stake-faucet").click()
    page.wait_for_url("**/provider/stake/")
    expect(page.locator("main")).to_contain_text("Sent 10,000 test $SPON to your stake address (0x")
    assert spon.functions.balanceOf(STAKER.address).call() == 10_000 * 10**18

    # 6. Approve, then stake, the amount the node needs (the page's default: the shortfall).
    expect(page.get_by_test_id("stake-approve")).to_have_text("1. Approve 200 $SPON")
    expect(page.get_by_test_id("stake-stake")).to_have_text("2. Stake 200 $SPON")
    _send_from_the_stake_page(page, "stake-approve", "Approval")
    stake_hash = _send_from_the_stake_page(page, "stake-stake", "Stake")
    expect(page.get_by_test_id("stake-message")).to_contain_text("It counts here once final")
    staking = node.contract("SponStaking")
    receipt = node.w3.eth.get_transaction_receipt(stake_hash)
    assert receipt.status == 1 and receipt["to"] == node.contracts["SponStaking"]
    assert [sent["from"] for sent in sent_transactions(page)] == [STAKER.address, STAKER.address]

    # Not final yet: the indexer reads nothing, and the page still says not matchable.
    assert _retry_locked(stake_chain_index, what="stake index").recorded == 0
    page.reload()
    expect(need).to_contain_text("no: not matched to renters")

    # 7. Blocks to finality, the indexer's beat run: the node is matchable.
    for _ in range(FINALITY - 1):
        node.rpc("evm_mine")
    assert _retry_locked(stake_chain_index, what="stake index").recorded == 1
    page.reload()
    expect(page.get_by_test_id("stake-staked")).to_contain_text("200")
    expect(page.get_by_test_id("stake-chain-active")).to_have_text("200")
    expect(need).to_contain_text("yes: matchable")
    expect(page.get_by_test_id("stake-warning")).to_have_count(0)
    expect(page.get_by_test_id("stake-event-source")).to_contain_text(f"on chain, block {receipt.blockNumber}")
    event = StakeEvent.objects.get()
    assert (event.source, event.kind, event.tx_hash) == ("chain", "stake", stake_hash)
    assert staking.functions.activeStake(STAKER.address).call() == 200 * 10**18
    page.goto("/provider/")
    expect(page.get_by_test_id("node-row").get_by_test_id("node-status")).to_have_text("online")
    expect(page.get_by_test_id("stake-warning")).to_have_count(0)
    machine.refresh_from_db()
    assert machine.stake_covered

    # 8. A renter deploys; the matchmaker places it on that node and the agent runs it.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()
    with order_sweeper() as sweeper:
        log_in(page, renter.email, "/deployments/new/")
        page.fill("#spec-text", spec("1.00"))
        expect(page.get_by_test_id("spec-valid")).to_be_visible()
        page.get_by_test_id("submit-deployment").click()
        page.wait_for_url("**/deployments/*/")
        deployment_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        expect(page.get_by_test_id("lease-node")).to_have_attribute("data-node-id", str(machine.id), timeout=SLOW_MS)
        expect(page.locator('[data-step="running"]')).to_have_attribute("data-state", "current", timeout=SLOW_MS)
        expect(page.get_by_test_id("log-lines")).to_contain_text("tick 2", timeout=SLOW_MS)
        page.reload()
        expect(page.get_by_test_id("commitment-chain-pending")).to_contain_text("Published to the LeaseRegistry")
        assert not sweeper.errors, sweeper.errors

    lease = Lease.objects.get(deployment_id=deployment_id)
    assert lease.node_id == machine.id and lease.committed_at is None

    # 9. The commitments pass and the sender, as beat runs them, until the lease is on chain.
    deadline = time.monotonic() + 60
    while not Lease.objects.filter(id=lease.id, committed_at__isnull=False).exists():
        assert time.monotonic() < deadline, "the lease's commitment was not recorded within 60 s"
        _retry_locked(commitments_run, what="commitments")
        _retry_locked(transactions_run, what="sender")
        time.sleep(0.2)
    lease.refresh_from_db()
    tx = ChainTransaction.objects.get(purpose="commitments")
    assert tx.status == TxStatus.MINED and lease.commitment_tx_hash == tx.tx_hash

    # 10. The deployment page says where: the chain, the registry, the transaction and its block.
    page.reload()
    expect(page.get_by_test_id("commitment-chain")).to_contain_text("chain 8453")
    expect(page.get_by_test_id("commitment-registry")).to_have_text(node.contracts["LeaseRegistry"])
    expect(page.get_by_test_id("commitment-tx")).to_have_text(tx.tx_hash)
    expect(page.get_by_test_id("commitment-chain")).to_contain_text(f"block {tx.receipt_block}")
    expect(page.get_by_test_id("commitment-lease-key")).to_have_text("0x" + lease.id.to_bytes(32, "big").hex())

    # 11. The proof from the API (the renter's session), the chain itself, and the SDK's verifier.
    response = page.request.get(f"/api/v1/deployments/{deployment_id}/match-proof")
    assert response.status == 200, response.text()
    proof = response.json()
    assert proof["chain"]["tx_hash"] == tx.tx_hash and proof["chain"]["lease_id"] == lease.id
    assert proof["chain"]["registry"] == node.contracts["LeaseRegistry"] and proof["chain"]["chain_id"] == 8453
    registry = node.contract("LeaseRegistry")
    on_chain = registry.functions.commitmentOf(lease.id.to_bytes(32, "big")).call()
    assert on_chain.hex().removeprefix("0x") == proof["commitment"].removeprefix("0x").lower()
    mined = node.w3.eth.get_transaction_receipt(tx.tx_hash)
    assert mined.status == 1 and mined.blockNumber == proof["chain"]["block"]
    checked = verify_match(proof, rpc_url=node.url)
    assert checked["ok"] and checked["winner"] == machine.id and checked["on_chain"]["matches"], checked
