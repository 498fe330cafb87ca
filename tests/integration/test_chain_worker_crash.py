"""A Celery worker killed (SIGKILL) in the middle of sending a platform transaction: the next
worker sends it once, never twice. First the sender alone, then the two callers whose every retry
must not move money twice: a slash (providers.slashing) and a payout (billing.payouts), each
decided in this process and carried out by the workers' beat tasks.

The pieces are real: PostgreSQL (the worker and this test share the test database), Redis as the
broker, `celery worker` processes, anvil with the contracts. Between the worker and anvil sits a
small JSON-RPC proxy, the only thing this test adds: it holds `eth_sendRawTransaction` so the test
knows the worker is inside the broadcast when it kills it, either before the bytes reach the node
("before") or after the node accepted them ("after"). Those are the two crashes the sender's
record-before-send design has to survive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from billing.models import AccountKind, LedgerAccount, LedgerTransaction, PayoutRequest, TransactionKind
from billing.payouts import payout_request_create
from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import ChainTransaction, TxStatus
from chain.sender import transaction_record
from providers.models import Slash, SlashStatus
from providers.slashing import slash_decide
from providers.stake_chain import stake_chain_index
from tests.billing.test_payouts_onchain import PAYEE, link_payout_wallet, settle
from tests.chain_fixtures import TREASURY, chain_register, stake_link
from tests.contracts.helpers import call
from tests.factories import make_node, make_provider, make_user
from tests.integration.processes import ROOT, celery_worker_command, require_postgresql_and_redis, shared_database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

QUEUE = "pytest-chain-crash"
KEY_ENV = "CHAIN_CRASH_TEST_KEY"
SENDER = DEV_ACCOUNTS[4]  # an account nothing else in the test uses: its nonce counts our sends
RECIPIENT = DEV_ACCOUNTS[5].address
SLASHER = DEV_ACCOUNTS[0]  # the deployer: it holds SponStaking's SLASHER_ROLE
STAKER = DEV_ACCOUNTS[6]
SPON = 10**18
USD = 1_000_000


class RpcProxy:
    """Forwards JSON-RPC to `target`; in mode "before" or "after" it holds eth_sendRawTransaction
    (without or after forwarding it) until released, and says so through `held`."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.mode = "pass"
        self.held = threading.Event()
        self.release = threading.Event()
        self.broadcasts = 0  # eth_sendRawTransaction requests that reached the node
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                method = json.loads(body).get("method") if body.startswith(b"{") else None
                mode = proxy.mode if method == "eth_sendRawTransaction" else "pass"
                if mode == "before":
                    proxy.held.set()
                    proxy.release.wait(120)
                    return  # the worker is dead by now; nothing reached the node
                answer = proxy.forward(body)
                if method == "eth_sendRawTransaction":
                    proxy.broadcasts += 1
                if mode == "after":
                    proxy.held.set()
                    proxy.release.wait(120)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.target, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def requirements() -> None:
    require_postgresql_and_redis(
        postgresql="the test database the worker process shares", redis="the broker the worker takes its tasks from"
    )


@pytest.fixture
def proxied_chain(requirements, anvil, settings, monkeypatch):
    """Base on anvil with the contracts, the registry row pointing at a proxy in front of it, and
    the sender's key in the environment (DEBUG: anvil's keys are refused otherwise)."""
    node = anvil(chain_id=8453, deploy=True)
    proxy = RpcProxy(node.url)
    settings.DEBUG = True
    settings.SITE_URL = "https://spheron.example"
    settings.CHAIN_DEVNET_FINALITY = 3
    settings.STAKING_CHAIN_KEY = "base"
    settings.STAKING_CONTRACT_ADDRESS = node.contracts["SponStaking"]
    monkeypatch.setenv(KEY_ENV, SENDER.private_key)
    yield node, proxy, chain_register(settings, node, rpc_url=proxy.url)
    proxy.close()


@pytest.fixture
def workers(tmp_path, proxied_chain) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts `celery worker` processes on a queue of this test's, on the test database, with the
    chain's RPC URL pointing at the proxy; stops whatever is left at the end."""
    _node, proxy, _chain = proxied_chain
    started: list[subprocess.Popen] = []
    env = {
        **os.environ,
        "DATABASE_URL": shared_database_url(),
        "DEBUG": "1",
        "CHAIN_DEVNET": "1",
        "CHAIN_BASE_RPC_URL": proxy.url,
        "CHAIN_DEVNET_FINALITY": "3",
        "STAKING_CHAIN_KEY": "base",
        "STAKING_CONTRACT_ADDRESS": _node.contracts["SponStaking"],
        "SITE_URL": "https://spheron.example",
        "SPHERON_VAR_DIR": str(tmp_path / "var"),
    }

    def start(**extra_env: str) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "w")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            celery_worker_command(
                f"pytest-crash-{os.getpid()}-{len(started)}@%h", "--without-heartbeat", "--queues", QUEUE
            ),
            cwd=ROOT,
            env={**env, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process.log_path = log.name  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=20)


def worker_log(process: subprocess.Popen) -> str:
    return Path(process.log_path).read_text()[-4000:]  # type: ignore[attr-defined]


def queue(task_name: str) -> None:
    from spheron_web.celery import app

    app.send_task(task_name, queue=QUEUE)


def kill_inside_the_broadcast(proxy: RpcProxy, worker: subprocess.Popen, *tasks: str) -> None:
    """Queues the tasks until the worker is held in eth_sendRawTransaction, then SIGKILLs it."""
    deadline = time.monotonic() + 90
    while not proxy.held.is_set():
        assert worker.poll() is None, worker_log(worker)
        assert time.monotonic() < deadline, "the worker never reached the broadcast:\n" + worker_log(worker)
        for name in tasks:
            queue(name)
        proxy.held.wait(3)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=20)
    proxy.mode = "pass"
    proxy.release.set()


def run_until(done: Callable[[], bool], worker: subprocess.Popen, *tasks: str, timeout: float = 90) -> None:
    """Queues the tasks (the beat's job) every second until `done()`."""
    deadline = time.monotonic() + timeout
    while not done():
        assert worker.poll() is None, worker_log(worker)
        assert time.monotonic() < deadline, "not done in time:\n" + worker_log(worker)
        for name in tasks:
            queue(name)
        time.sleep(1)


@pytest.mark.parametrize("crash", ["before", "after"])
def test_a_worker_killed_in_the_broadcast_leaves_one_transaction(proxied_chain, workers, crash):
    node, proxy, chain = proxied_chain
    tx = transaction_record(
        chain=chain, purpose="payout", reference=f"crash-{crash}", to=RECIPIENT, value=10**15, sender_key_env=KEY_ENV
    )
    balance_before = node.w3.eth.get_balance(RECIPIENT)

    proxy.mode = crash
    first = workers(**{KEY_ENV: SENDER.private_key})
    kill_inside_the_broadcast(proxy, first, "chain.tasks.send_transactions")
    tx.refresh_from_db()
    assert tx.tx_hash and tx.nonce == 0  # signed and stored before the broadcast began
    assert proxy.broadcasts == (1 if crash == "after" else 0)

    second = workers(**{KEY_ENV: SENDER.private_key})
    run_until(
        lambda: ChainTransaction.objects.get(pk=tx.pk).status == TxStatus.MINED,
        second,
        "chain.tasks.send_transactions",
    )
    tx.refresh_from_db()
    assert node.w3.eth.get_transaction_count(SENDER.address) == 1  # one transaction from the sender, ever
    assert node.w3.eth.get_balance(RECIPIENT) - balance_before == 10**15
    assert [entry["hash"] for entry in tx.history] == [tx.tx_hash]  # the same signed bytes, never re-signed


def _mine(node, blocks: int = 1) -> None:
    node.rpc("anvil_mine", [hex(blocks)])


def test_a_slash_whose_worker_was_killed_in_the_broadcast_slashes_once(proxied_chain, workers):
    """The slash is decided here; a worker records and sends it and dies inside the broadcast; the
    next one sends the same bytes, the indexer mirrors the one Slashed event, the slash is applied."""
    node, proxy, _chain = proxied_chain
    provider = make_provider()
    make_node(provider=provider, gpu_count=1, is_simulated=False, stake_covered=False)
    stake_link(provider.user, STAKER.address)
    spon, staking = node.contract("SponToken"), node.contract("SponStaking")
    call(node.w3, TREASURY, spon.functions.transfer(STAKER.address, 400 * SPON))
    call(node.w3, STAKER, spon.functions.approve(node.contracts["SponStaking"], 400 * SPON))
    call(node.w3, STAKER, staking.functions.stake(400 * SPON))
    _mine(node, 3)
    stake_chain_index()
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 400 * SPON
    slasher_nonce = node.w3.eth.get_transaction_count(SLASHER.address)

    slash = slash_decide(provider=provider, amount_spon="150", reason="Lease 7 ended by its node", reference="t:1")
    assert slash.status == SlashStatus.DECIDED
    proxy.mode = "before"
    first = workers(CHAIN_SLASHER_KEY=SLASHER.private_key)
    kill_inside_the_broadcast(proxy, first, "providers.tasks.run_slashes", "chain.tasks.send_transactions")
    slash.refresh_from_db()
    assert slash.status == SlashStatus.SENDING and slash.chain_tx.tx_hash  # recorded, signed, not sent
    assert staking.functions.activeStake(STAKER.address).call() == 400 * SPON

    second = workers(CHAIN_SLASHER_KEY=SLASHER.private_key)

    def applied() -> bool:
        _mine(node)  # blocks for finality (anvil mines only on transactions)
        return Slash.objects.get(pk=slash.pk).status == SlashStatus.APPLIED

    run_until(
        applied,
        second,
        "chain.tasks.send_transactions",
        "providers.tasks.index_stake_chain",
        "providers.tasks.run_slashes",
    )
    slash.refresh_from_db()
    provider.refresh_from_db()
    events = staking.events.Slashed().get_logs(from_block=0)
    assert len(events) == 1 and events[0]["args"]["amount"] == 150 * SPON
    assert node.w3.eth.get_transaction_count(SLASHER.address) == slasher_nonce + 1
    assert staking.functions.activeStake(STAKER.address).call() == 250 * SPON
    assert int(provider.staked_spon) == 250 * SPON and int(slash.amount_slashed) == 150 * SPON
    assert provider.stake_events.filter(kind="slash").count() == 1


def test_a_payout_whose_worker_was_killed_in_the_broadcast_pays_once(proxied_chain, workers):
    """The payout is requested here; a worker records the transfer, sends it and dies after the node
    accepted it; the next one finds it by its hash, and the ledger is posted once."""
    node, proxy, _chain = proxied_chain
    provider = make_user(email="host@example.test", is_provider=True, is_developer=False)
    settle(provider, 100 * USD)
    link_payout_wallet(provider)
    payee_before = node.w3.eth.get_balance(PAYEE.address)
    payout = payout_request_create(user=provider, amount=10 * USD, chain="base", token="native")
    assert payout.status == PayoutRequest.Status.APPROVED

    proxy.mode = "after"
    first = workers(CHAIN_PAYOUT_KEY=SENDER.private_key)
    kill_inside_the_broadcast(proxy, first, "billing.tasks.run_payouts", "chain.tasks.send_transactions")
    payout.refresh_from_db()
    assert payout.status == PayoutRequest.Status.SENDING and proxy.broadcasts == 1

    second = workers(CHAIN_PAYOUT_KEY=SENDER.private_key)
    run_until(
        lambda: PayoutRequest.objects.get(pk=payout.pk).status == PayoutRequest.Status.PAID,
        second,
        "chain.tasks.send_transactions",
        "billing.tasks.run_payouts",
    )
    payout.refresh_from_db()
    expected = 10 * USD * 10**18 // (3000 * USD)  # $10 at the devnet's $3,000 per ETH, rounded down
    assert int(payout.token_amount) == expected
    assert node.w3.eth.get_balance(PAYEE.address) - payee_before == expected
    assert node.w3.eth.get_transaction_count(SENDER.address) == 1
    assert LedgerTransaction.objects.filter(kind=TransactionKind.PAYOUT).count() == 1
    settled = LedgerAccount.objects.get(kind=AccountKind.PROVIDER_SETTLED, user=provider).balance
    assert settled == 90 * USD
