"""manage.py chains_devnet (chain/devnet.py): the devnets `make run` starts, on free ports here."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from solders.keypair import Keypair
from web3 import Web3

from chain import devnet as chain_devnet
from chain.evm import artifacts
from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import Chain, ChainKind, ChainToken, Deposit, DepositStatus, WatchCursor
from chain.registry import CHAIN_DEFAULTS, CHAIN_KEYS
from chain.services import chain_watch, reference_for
from chain.solana import scan as solana_scan
from tests.chain_fixtures import require_anvil

EVM_DEFAULTS = [default for default in CHAIN_DEFAULTS if default.kind == ChainKind.EVM]
REAL_CHAIN_IDS = {
    "zksync": 324, "arbitrum": 42161, "optimism": 10, "bnb": 56, "avalanche": 43114, "filecoin": 314, "base": 8453,
}  # fmt: skip


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def devnet_settings(settings, tmp_path, db):
    """DEBUG devnet settings with the chains on free ports and the var dir in tmp_path."""
    ports = dict(zip(CHAIN_KEYS, _free_ports(len(CHAIN_KEYS)), strict=True))
    settings.DEBUG = True
    settings.CHAIN_DEVNET = True
    settings.CHAIN_DEVNET_FINALITY = 3
    settings.CHAIN_DEVNET_PORTS = ports
    settings.CHAIN_RPC_URLS = {key: f"http://127.0.0.1:{port}" for key, port in ports.items()}
    settings.VAR_DIR = tmp_path
    return settings


@pytest.fixture
def devnet_up(devnet_settings):
    """Starts the devnets (fast blocks); every one started is stopped at teardown."""
    started: list[chain_devnet.Devnet] = []
    messages: list[str] = []

    def start(**kwargs) -> chain_devnet.Devnet:
        kwargs.setdefault("block_time", 0.5)
        devnet = chain_devnet.devnet_start(log=messages.append, **kwargs)
        started.append(devnet)
        return devnet

    start.messages = messages
    yield start
    for devnet in started:
        devnet.stop()


def test_rows_point_at_nodes_with_real_chain_ids_and_deployed_contracts(devnet_up, devnet_settings):
    require_anvil()
    devnet = devnet_up()
    predicted = artifacts.predicted_addresses(chain_devnet.DEPLOYER.address)

    assert devnet.unavailable == {}
    assert {chain.key for chain in devnet.ready} == set(CHAIN_KEYS)
    for default in EVM_DEFAULTS:
        row = Chain.objects.get(key=default.key)
        assert row.enabled
        assert row.chain_id == REAL_CHAIN_IDS[default.key]
        assert row.rpc_url == f"http://127.0.0.1:{devnet_settings.CHAIN_DEVNET_PORTS[default.key]}"
        assert row.finality == 3
        w3 = Web3(Web3.HTTPProvider(row.rpc_url))
        assert w3.eth.chain_id == REAL_CHAIN_IDS[default.key]
        assert row.receiver_address == predicted["PaymentReceiver"]
        for address in predicted.values():
            assert w3.eth.get_code(address), f"no contract at {address} on {default.key}"
        usdc = ChainToken.objects.get(chain=row, symbol="USDC")
        assert usdc.address == predicted["TestUSDC"]
        demo_usdc = artifacts.contract(w3, "TestUSDC", usdc.address).functions.balanceOf(DEV_ACCOUNTS[2].address)
        assert demo_usdc.call() == chain_devnet.DEMO_USDC
        # Blocks accrue with no traffic, so confirmations do too.
        head = w3.eth.block_number
        deadline = time.monotonic() + 5
        while w3.eth.block_number == head and time.monotonic() < deadline:
            time.sleep(0.1)
        assert w3.eth.block_number > head
    base = Chain.objects.get(key="base")
    assert base.spon_token_address == predicted["SponToken"]
    assert ChainToken.objects.filter(chain=base, symbol="SPON", address=predicted["SponToken"]).exists()
    spon = artifacts.contract(Web3(Web3.HTTPProvider(base.rpc_url)), "SponToken", predicted["SponToken"])
    # The payout hot wallet of `make run` (the deployer's key) can pay $SPON payouts.
    assert spon.functions.balanceOf(chain_devnet.DEPLOYER.address).call() == chain_devnet.PAYOUT_WALLET_SPON

    solana = Chain.objects.get(key="solana")
    assert solana.enabled
    assert solana.rpc_url == f"http://127.0.0.1:{devnet_settings.CHAIN_DEVNET_PORTS['solana']}"
    keypair_file = Path(devnet_settings.VAR_DIR) / "chains" / "solana-treasury.json"
    treasury = Keypair.from_bytes(bytes(json.loads(keypair_file.read_text())))
    assert solana.treasury_address == str(treasury.pubkey())
    assert oct(keypair_file.stat().st_mode & 0o777) == "0o600"
    assert solana_scan.get_balance(solana.rpc_url, solana.treasury_address) >= chain_devnet.SOLANA_TREASURY_LAMPORTS
    # Funded at genesis, not by a memo-less transfer the watcher would file as an unmatched deposit.
    assert solana_scan.scan_transfers(solana.rpc_url, solana.treasury_address) == []

    devnet.stop()
    assert not Chain.objects.filter(enabled=True).exists()
    assert not _listening(devnet_settings.CHAIN_DEVNET_PORTS["arbitrum"])
    assert not _listening(devnet_settings.CHAIN_DEVNET_PORTS["solana"])


def test_a_deposit_from_the_demo_wallet_is_credited_through_the_rows_it_wrote(devnet_up, devnet_settings):
    require_anvil()
    from tests.factories import make_user

    devnet_up(solana=False)
    user = make_user(email="payer@example.test")
    ref = reference_for(user).ref
    row = Chain.objects.get(key="arbitrum")
    tx_hash = chain_devnet.demo_pay(chain_key="arbitrum", amount=Decimal("0.01"), reference=ref)  # $30 at the demo rate

    deadline = time.monotonic() + 20
    deposit = None
    while time.monotonic() < deadline:
        chain_watch(chain_key="arbitrum")
        deposit = Deposit.objects.filter(chain=row, tx_hash=tx_hash).first()
        if deposit is not None and deposit.status == DepositStatus.CREDITED:
            break
        time.sleep(0.3)
    assert deposit is not None and deposit.status == DepositStatus.CREDITED
    assert deposit.user_id == user.id
    assert deposit.payer.lower() == DEV_ACCOUNTS[2].address.lower()


def test_the_demo_payer_pays_sol_with_the_reference_as_memo(devnet_up, devnet_settings):
    devnet_up(evm=False)
    ref = "0x" + "ab" * 32
    signature = chain_devnet.demo_pay(chain_key="solana", amount=Decimal("0.1"), reference=ref)
    solana = Chain.objects.get(key="solana")
    deadline = time.monotonic() + 10
    transfers = []
    while not transfers and time.monotonic() < deadline:
        transfers = solana_scan.scan_transfers(solana.rpc_url, solana.treasury_address)
        time.sleep(0.2)
    assert [(t.signature, t.lamports, t.memo) for t in transfers] == [(signature, 10**8, ref)]


def test_a_second_run_reuses_the_saved_state(devnet_up, devnet_settings):
    require_anvil()
    first = devnet_up(solana=True)
    addresses = dict(first.addresses)
    treasury = first.solana_treasury
    w3 = Web3(Web3.HTTPProvider(Chain.objects.get(key="base").rpc_url))
    time.sleep(1.2)
    head = w3.eth.block_number
    first.stop()

    second = devnet_up(solana=True)
    assert second.addresses == addresses
    assert second.reused == {default.key for default in EVM_DEFAULTS}
    assert second.solana_treasury == treasury
    assert w3.eth.block_number >= head  # the chain went on from its saved state, not from genesis
    assert Chain.objects.get(key="base").receiver_address == addresses["base"]["PaymentReceiver"]


def test_a_cursor_ahead_of_a_fresh_chain_is_dropped(devnet_up, devnet_settings):
    require_anvil()
    from chain.registry import registry_sync

    registry_sync(devnet=True)
    WatchCursor.objects.create(chain=Chain.objects.get(key="optimism"), last_block=1_000_000)
    devnet_up(solana=False)
    assert not WatchCursor.objects.filter(chain__key="optimism").exists()


def test_refused_when_debug_is_off(devnet_settings):
    devnet_settings.DEBUG = False
    with pytest.raises(chain_devnet.DevnetRefused, match="DEBUG"):
        chain_devnet.devnet_start(log=lambda line: None)
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("chains_devnet", "--exit-when-ready", stdout=io.StringIO())
    assert not any(_listening(port) for port in devnet_settings.CHAIN_DEVNET_PORTS.values())
    assert not Chain.objects.exists()


def test_without_anvil_the_evm_chains_are_disabled_and_solana_still_runs(devnet_up, devnet_settings, monkeypatch):
    monkeypatch.setenv("ANVIL_BIN", "/nonexistent/anvil")
    devnet = devnet_up()

    assert any("anvil is not installed" in line for line in devnet_up.messages)
    assert set(devnet.unavailable) == {default.key for default in EVM_DEFAULTS}
    assert not Chain.objects.filter(kind=ChainKind.EVM, enabled=True).exists()
    assert Chain.objects.filter(kind=ChainKind.EVM).count() == len(EVM_DEFAULTS)  # rows exist, disabled
    solana = Chain.objects.get(key="solana")
    assert solana.enabled
    assert solana_scan.get_balance(solana.rpc_url, solana.treasury_address) > 0
    lines = chain_devnet.summary(devnet)
    assert lines[0] == chain_devnet.READY_LINE
    assert any("zksync" in line and "unavailable: anvil is not installed" in line for line in lines)


def test_the_command_runs_until_sigterm_and_stops_every_node(devnet_settings, monkeypatch):
    require_anvil()
    out = io.StringIO()

    def terminate_when_ready() -> None:
        deadline = time.monotonic() + 60
        while chain_devnet.READY_LINE not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # in its wait loop by now
        os.kill(os.getpid(), signal.SIGTERM)

    handler_before = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=terminate_when_ready, daemon=True)
    killer.start()
    call_command("chains_devnet", "--block-time", "0.5", stdout=out)
    killer.join(timeout=5)

    text = out.getvalue()
    assert chain_devnet.READY_LINE in text
    assert "arbitrum" in text and "42161" in text
    assert DEV_ACCOUNTS[2].private_key in text  # DEBUG only: the demo wallet to import
    assert text.rstrip().endswith("Chain devnets stopped.")
    assert not any(_listening(port) for port in devnet_settings.CHAIN_DEVNET_PORTS.values())
    assert not Chain.objects.filter(enabled=True).exists()
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the command gave its handler back


def test_the_command_without_anvil_or_solana_stays_idle_instead_of_exiting(devnet_settings, monkeypatch):
    """Under honcho, a process that exits stops `make run`: with nothing to run it waits."""
    monkeypatch.setenv("ANVIL_BIN", "/nonexistent/anvil")
    out = io.StringIO()
    started = time.monotonic()
    call_command("chains_devnet", "--no-solana", "--for-seconds", "1.5", stdout=out)
    assert time.monotonic() - started >= 1.5
    text = out.getvalue()
    assert "No chain devnet is running: crypto top-ups are unavailable." in text
    assert "Nothing to run; waiting" in text
