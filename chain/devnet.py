"""The local devnets `make run` starts (`manage.py chains_devnet`): one anvil per EVM chain of the
registry with its real chain id, the contracts deployed at their deterministic addresses, a local
Solana JSON-RPC endpoint on LiteSVM with a funded treasury, and the registry rows pointing at them.

- Ports are the registry's devnet ports (settings.CHAIN_DEVNET_PORTS, the URLs of
  `registry.devnet_rpc_url`), so the rows, the watchers (settings.CHAIN_RPC_URLS) and a wallet
  all name the same node.
- Each anvil keeps its state in `<var>/chains/anvil-<chain id>.json` (written every few seconds
  and at a clean stop), so a restart finds its contracts, balances and deposits again and
  `deploy_all` reuses the contracts it finds at the predicted addresses.
- The Solana ledger lives in memory (the LiteSVM server has no state file): every start funds the
  treasury again. The treasury keypair (and a demo payer's) is kept in `<var>/chains/`, never in
  the repository or the database: the rows hold public keys only.
- Everything here uses anvil's public test keys, so it refuses to run unless DEBUG (and
  CHAIN_DEVNET) is on.
- Without anvil (no Node.js packages) the EVM chains are marked disabled, so the top-up page says
  crypto top-ups are unavailable, and the Solana devnet still runs (it is pure Python).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from web3 import Web3

from chain.evm import artifacts
from chain.evm import client as evm_client
from chain.evm.anvil import DEV_ACCOUNTS, AnvilError, AnvilProcess, anvil_binary, start_anvil
from chain.models import Chain, ChainKind, WatchCursor
from chain.registry import CHAIN_DEFAULTS, ChainAddresses, ChainDefault, registry_sync
from chain.services import reference_for
from chain.solana import scan as solana_scan
from chain.solana.devnet import DEFAULT_FINALITY_SLOTS, DEFAULT_SLOT_MS, DevnetHandle, start_devnet

DEPLOYER = DEV_ACCOUNTS[0]  # deploys and owns the contracts (nonces 0-10 are the deployment: artifacts.deploy_all)
TREASURY = DEV_ACCOUNTS[1]  # receives the minted $SPON and the receiver's withdrawals
DEMO_PAYER_INDEX = 2
DEMO_PAYER = DEV_ACCOUNTS[DEMO_PAYER_INDEX]  # the wallet the demo developer pays from
DEMO_DEVELOPER_EMAIL = "developer@spheron.test"  # demo.services.DEVELOPER_EMAIL (demo sits above chain)

EVM_BLOCK_TIME_SECONDS = 1.0
STATE_INTERVAL_SECONDS = 5  # anvil writes its state file this often, so a kill loses seconds at most
DEMO_USDC = 100_000 * 10**artifacts.USDC_DECIMALS  # minted to the demo payer once per chain
DEMO_SPON = 1_000_000 * 10**artifacts.SPON_DECIMALS  # sent from the treasury to the demo payer once
# To the deployer (anvil account #0), which `make run` also uses as the payout hot wallet
# (CHAIN_PAYOUT_KEY): $SPON payouts need a balance. Sent from the treasury, once.
PAYOUT_WALLET_SPON = 10_000_000 * 10**artifacts.SPON_DECIMALS
# RewardDistributor pays the providers' claims from what it holds: the treasury funds it once, enough
# for a hundred eras at the default emission (REWARD_ERA_EMISSION_SPON, 100,000 a day).
REWARD_DISTRIBUTOR_SPON = 10_000_000 * 10**artifacts.SPON_DECIMALS
SOLANA_TREASURY_LAMPORTS = 2 * 10**9  # 2 SOL: well above the rent-exempt minimum of an account
SOLANA_DEMO_PAYER_LAMPORTS = 1_000 * 10**9
READY_LINE = "Chain devnets ready."


class DevnetRefused(RuntimeError):
    """The devnet would put public keys to work: refused outside DEBUG / CHAIN_DEVNET."""


@dataclass
class ChainReady:
    key: str
    name: str
    kind: str
    chain_id: int | None
    rpc_url: str
    pay_to: str  # the receiver contract (EVM) or the treasury (Solana)
    finality: str
    reused: bool = False  # contracts found from a previous run (EVM)


@dataclass
class Devnet:
    """What `devnet_start` brought up; `stop()` ends every node it started."""

    var_dir: Path
    anvils: dict[str, AnvilProcess] = field(default_factory=dict)
    solana: DevnetHandle | None = None
    ready: list[ChainReady] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # chain key -> why
    addresses: dict[str, dict[str, str]] = field(default_factory=dict)  # EVM chain key -> contracts
    reused: set[str] = field(default_factory=set)  # EVM chains whose contracts a previous run deployed
    solana_treasury: str = ""
    solana_demo_payer_path: Path | None = None

    @property
    def running(self) -> bool:
        return bool(self.ready)

    def dead_chains(self) -> list[str]:
        """EVM chains whose anvil has exited since it started."""
        return [key for key, node in self.anvils.items() if not node.running]

    def chain_lost(self, key: str, why: str) -> None:
        Chain.objects.filter(key=key).update(enabled=False)
        self.unavailable[key] = why
        self.ready = [chain for chain in self.ready if chain.key != key]

    def stop(self) -> None:
        """Stops the nodes (anvil writes its state on the way out) and marks their chains disabled:
        with no node behind it a chain cannot take deposits."""
        keys = [chain.key for chain in self.ready]
        if self.solana is not None:
            self.solana.stop()
            self.solana = None
        with ThreadPoolExecutor(max_workers=max(1, len(self.anvils))) as pool:
            list(pool.map(lambda node: node.stop(), self.anvils.values()))
        self.anvils.clear()
        Chain.objects.filter(key__in=keys).update(enabled=False)
        self.ready = []


def devnet_check() -> None:
    if not settings.DEBUG:
        raise DevnetRefused("chains_devnet runs only with DEBUG on: the devnets sign with anvil's public test keys.")
    if not settings.CHAIN_DEVNET:
        raise DevnetRefused(
            "CHAIN_DEVNET is off: the chain rows point at real chains; chains_devnet would rewrite them."
        )


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


@dataclass
class _EvmOutcome:
    default: ChainDefault
    url: str = ""
    node: AnvilProcess | None = None
    contracts: dict[str, str] = field(default_factory=dict)
    reused: bool = False
    head: int = 0
    error: str = ""


def _evm_chain_up(default: ChainDefault, *, binary: str, state_dir: Path, block_time: float) -> _EvmOutcome:
    """Start (or find) the node of one chain, deploy or reuse the contracts, fund the demo payer."""
    outcome = _EvmOutcome(default)
    port = settings.CHAIN_DEVNET_PORTS[default.key]
    url = f"http://127.0.0.1:{port}"
    try:
        if _port_open(port):
            # A node left over from an earlier run (or someone else's): use it only if it is this chain.
            w3 = evm_client.web3_for(url, timeout=5)
            try:
                answered = w3.eth.chain_id
            except Exception:  # anything on the port that is not an EVM node
                answered = None
            if answered != default.chain_id:
                outcome.error = f"port {port} is taken by something that is not chain {default.chain_id}"
                return outcome
        else:
            outcome.node = start_anvil(
                chain_id=default.chain_id,
                port=port,
                block_time=block_time,
                state_dir=state_dir,
                log_path=state_dir / f"anvil-{default.key}.log",
                binary=binary,
                extra_args=["--state-interval", str(STATE_INTERVAL_SECONDS)],
            )
            w3 = evm_client.web3_for(url, timeout=10)
        outcome.url = url
        predicted = artifacts.predicted_addresses(DEPLOYER.address)
        outcome.reused = all(w3.eth.get_code(address) for address in predicted.values())
        outcome.contracts = artifacts.deploy_all(w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address)
        _fund_demo_payer(w3, outcome.contracts, spon=default.has_spon)
        outcome.head = w3.eth.block_number
    except (AnvilError, artifacts.DeployError, OSError, ValueError) as exc:
        outcome.error = str(exc).splitlines()[0]
        if outcome.node is not None:
            outcome.node.stop()
            outcome.node = None
    return outcome


def _fund_demo_payer(w3: Web3, contracts: dict[str, str], *, spon: bool) -> None:
    """Test USDC (and $SPON on the chain that has it) for the demo payer, and $SPON for the payout
    hot wallet (the deployer) and for RewardDistributor's claims, once: a restarted node that kept
    its state has them already (a distributor that paid claims since keeps what is left). Native
    coins: anvil's genesis gives 10,000 to each."""
    pending = []
    usdc = artifacts.contract(w3, "TestUSDC", contracts["TestUSDC"])
    if usdc.functions.balanceOf(DEMO_PAYER.address).call() == 0:
        pending.append((DEPLOYER, usdc.functions.mint(DEMO_PAYER.address, DEMO_USDC)))
    token = artifacts.contract(w3, "SponToken", contracts["SponToken"])
    if spon and token.functions.balanceOf(DEMO_PAYER.address).call() == 0:
        pending.append((TREASURY, token.functions.transfer(DEMO_PAYER.address, DEMO_SPON)))
    if spon and token.functions.balanceOf(DEPLOYER.address).call() == 0:
        pending.append((TREASURY, token.functions.transfer(DEPLOYER.address, PAYOUT_WALLET_SPON)))
    distributor = contracts.get("RewardDistributor")
    if spon and distributor and token.functions.balanceOf(distributor).call() == 0:
        pending.append((TREASURY, token.functions.transfer(distributor, REWARD_DISTRIBUTOR_SPON)))
    hashes = []
    for account, call in pending:
        transaction = call.build_transaction(
            {
                "from": account.address,
                "chainId": w3.eth.chain_id,
                "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            }
        )
        signed = w3.eth.account.sign_transaction(transaction, account.private_key)
        hashes.append(w3.eth.send_raw_transaction(signed.raw_transaction))
    for tx_hash in hashes:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.1)
        if receipt["status"] != 1:
            raise artifacts.DeployError(f"funding the demo payer failed: {tx_hash.hex()}")


def keypair_load_or_create(path: Path) -> Keypair:
    """A Solana keypair kept in `path` (the solana CLI's format: a JSON array of 64 bytes), made on
    first use and readable by its owner only."""
    if path.exists():
        return Keypair.from_bytes(bytes(json.loads(path.read_text(encoding="ascii"))))
    keypair = Keypair()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        json.dump(list(bytes(keypair)), handle)
    return keypair


def _treasury_fund(handle: DevnetHandle, treasury: Pubkey, lamports: int) -> None:
    """Give the treasury its balance at genesis, as `solana-test-validator --account` would. An
    airdrop would be a transfer to the treasury without a memo, which the watcher rightly files as an
    unmatched deposit, one more in the admin queue on every start."""
    handle.devnet.set_balance(treasury, lamports)


def _solana_up(devnet: Devnet, state_dir: Path) -> str:
    """Start the Solana devnet on its port and fund the treasury and the demo payer. Returns an
    error message, or "" when it runs."""
    port = settings.CHAIN_DEVNET_PORTS["solana"]
    if _port_open(port):
        return f"port {port} is taken (another Solana devnet running?)"
    try:
        handle = start_devnet(port, slot_ms=DEFAULT_SLOT_MS, finality_slots=DEFAULT_FINALITY_SLOTS)
    except OSError as exc:
        return f"cannot serve on port {port}: {exc}"
    devnet.solana = handle
    treasury = keypair_load_or_create(state_dir / "solana-treasury.json").pubkey()
    payer_path = state_dir / "solana-demo-payer.json"
    payer = keypair_load_or_create(payer_path).pubkey()
    _treasury_fund(handle, treasury, SOLANA_TREASURY_LAMPORTS)
    try:
        solana_scan.request_airdrop(handle.url, str(payer), SOLANA_DEMO_PAYER_LAMPORTS)
        balance = solana_scan.get_balance(handle.url, str(treasury))
    except solana_scan.SolanaRpcError as exc:
        handle.stop()
        devnet.solana = None
        return f"funding the treasury failed: {exc}"
    rent_exempt = handle.devnet.call("getMinimumBalanceForRentExemption", [0])
    if balance < rent_exempt:
        handle.stop()
        devnet.solana = None
        return f"the treasury holds {balance} lamports, below the rent-exempt minimum {rent_exempt}"
    devnet.solana_treasury = str(treasury)
    devnet.solana_demo_payer_path = payer_path
    return ""


def devnet_start(
    *,
    block_time: float = EVM_BLOCK_TIME_SECONDS,
    evm: bool = True,
    solana: bool = True,
    var_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> Devnet:
    """Bring up the devnets and write the registry rows; returns at once when they are ready.
    A chain that cannot run is disabled, with the reason in `Devnet.unavailable`."""
    devnet_check()
    state_dir = Path(var_dir or settings.VAR_DIR) / "chains"
    state_dir.mkdir(parents=True, exist_ok=True)
    devnet = Devnet(var_dir=state_dir)
    evm_defaults = [default for default in CHAIN_DEFAULTS if default.kind == ChainKind.EVM]
    binary = anvil_binary() if evm else None
    outcomes: list[_EvmOutcome] = []
    if evm and binary is None:
        why = "anvil is not installed (install Node.js 20+ and npm, then `make npm`)"
        log(f"No EVM devnets: {why}. Crypto top-ups on the EVM chains are unavailable; everything else works.")
        devnet.unavailable.update({default.key: why for default in evm_defaults})
    elif evm:
        with ThreadPoolExecutor(max_workers=len(evm_defaults)) as pool:
            outcomes = list(
                pool.map(
                    lambda default: _evm_chain_up(default, binary=binary, state_dir=state_dir, block_time=block_time),
                    evm_defaults,
                )
            )
    else:
        devnet.unavailable.update({default.key: "not started (--no-evm)" for default in evm_defaults})

    addresses: dict[str, ChainAddresses] = {}
    for outcome in outcomes:
        key = outcome.default.key
        if outcome.error:
            devnet.unavailable[key] = outcome.error
            continue
        if outcome.node is not None:
            devnet.anvils[key] = outcome.node
        devnet.addresses[key] = outcome.contracts
        if outcome.reused:
            devnet.reused.add(key)
        addresses[key] = ChainAddresses(
            receiver=outcome.contracts["PaymentReceiver"],
            treasury=TREASURY.address,
            spon_token=outcome.contracts["SponToken"] if outcome.default.has_spon else "",
            test_usdc=outcome.contracts["TestUSDC"],
        )

    if solana:
        why = _solana_up(devnet, state_dir)
        if why:
            devnet.unavailable["solana"] = why
        else:
            addresses["solana"] = ChainAddresses(treasury=devnet.solana_treasury)
    else:
        devnet.unavailable["solana"] = "not started (--no-solana)"

    registry_sync(devnet=True, addresses=addresses)
    heads = {outcome.default.key: outcome.head for outcome in outcomes if not outcome.error}
    _rows_point_at_nodes(devnet, addresses, heads, block_time=block_time)
    return devnet


def _rows_point_at_nodes(
    devnet: Devnet, addresses: dict[str, ChainAddresses], heads: dict[str, int], *, block_time: float
) -> None:
    """registry_sync keeps an operator's edits of an existing row; on the devnet the row must name
    the local node, with devnet finality, whatever it said before."""
    for default in CHAIN_DEFAULTS:
        if default.key not in addresses:
            Chain.objects.filter(key=default.key).update(enabled=False)
            continue
        url = f"http://127.0.0.1:{settings.CHAIN_DEVNET_PORTS[default.key]}"
        is_evm = default.kind == ChainKind.EVM
        block_time_ms = int(block_time * 1000) if is_evm else DEFAULT_SLOT_MS
        Chain.objects.filter(key=default.key).update(
            rpc_url=url,
            finality=settings.CHAIN_DEVNET_FINALITY,
            block_time_ms=block_time_ms,
            explorer_tx_url="",
            enabled=True,
        )
        if is_evm:
            # A node that lost its state restarts at block 0: a cursor from the old chain would skip
            # every new block.
            WatchCursor.objects.filter(chain__key=default.key, last_block__gt=heads[default.key]).delete()
            pay_to = addresses[default.key].receiver
            finality = f"{settings.CHAIN_DEVNET_FINALITY} blocks × {block_time:g} s"
        else:
            WatchCursor.objects.filter(chain__key=default.key).delete()  # the ledger starts empty each run
            pay_to = addresses[default.key].treasury
            finality = f"'finalized' ({DEFAULT_FINALITY_SLOTS} slots × {DEFAULT_SLOT_MS} ms)"
        devnet.ready.append(
            ChainReady(
                key=default.key,
                name=default.name,
                kind=default.kind,
                chain_id=default.chain_id,
                rpc_url=url,
                pay_to=pay_to,
                finality=finality,
                reused=default.key in devnet.reused,
            )
        )


def demo_reference() -> str:
    """The demo developer's deposit reference ("" without the demo data)."""
    user = get_user_model().objects.filter(email=DEMO_DEVELOPER_EMAIL).first()
    return reference_for(user).ref if user is not None else ""


def summary(devnet: Devnet) -> list[str]:
    """The readiness summary the command prints (DEBUG only: it names public test keys)."""
    lines = [READY_LINE if devnet.ready else "No chain devnet is running: crypto top-ups are unavailable."]
    for chain in devnet.ready:
        chain_id = str(chain.chain_id) if chain.chain_id is not None else "-"
        label = "receiver" if chain.kind == ChainKind.EVM else "treasury"
        kept = "  (contracts kept from the last run)" if chain.reused else ""
        lines.append(
            f"  {chain.key:<10} {chain.name:<18} id {chain_id:<6} {chain.rpc_url:<23} "
            f"{label} {chain.pay_to}  finality {chain.finality}{kept}"
        )
    for key, why in devnet.unavailable.items():
        lines.append(f"  {key:<10} unavailable: {why}")
    if any(chain.kind == ChainKind.EVM for chain in devnet.ready):
        lines.append(
            f"Demo wallet (anvil's public test account #{DEMO_PAYER_INDEX}, devnet only): {DEMO_PAYER.address}, "
            f"private key {DEMO_PAYER.private_key}. Import it into a wallet and add a network with one of the "
            "RPC URLs and chain ids above; it holds 10,000 of each native coin and test USDC (and $SPON on Base)."
        )
    if devnet.solana_demo_payer_path is not None:
        lines.append(
            f"Solana demo payer keypair: {devnet.solana_demo_payer_path} "
            f"({SOLANA_DEMO_PAYER_LAMPORTS // 10**9} SOL; send to the treasury with your reference as the memo)."
        )
    reference = demo_reference()
    if reference:
        lines.append(f"The demo developer ({DEMO_DEVELOPER_EMAIL}) pays with the reference {reference}.")
    return lines


def run_until(devnet: Devnet, stop: threading.Event, *, log: Callable[[str], None] = print) -> None:
    """Keep the devnets up until `stop` is set; a node that dies takes its chain out of service."""
    while not stop.wait(1.0):
        for key in devnet.dead_chains():
            node = devnet.anvils.pop(key)
            why = f"anvil exited (code {node.process.returncode}); see {node.log_path}"
            log(f"Chain {key}: {why}. Deposits on it are unavailable until chains_devnet restarts.")
            devnet.chain_lost(key, why)


def demo_pay(*, chain_key: str, amount: Decimal, reference: str, wait_seconds: float = 0) -> str:
    """Pay `amount` whole native coins from the demo payer to the chain's receiver (EVM: deposit(ref))
    or treasury (Solana: a transfer with the reference as its memo), as a wallet would. For trying
    the devnet by hand (`manage.py shell -c`); returns the transaction hash or signature."""
    devnet_check()
    chain = Chain.objects.get(key=chain_key, enabled=True)
    base_units = int(amount * 10**chain.native_decimals)
    if chain.kind == ChainKind.SOLANA:
        payer = keypair_load_or_create(Path(settings.VAR_DIR) / "chains" / "solana-demo-payer.json")
        url = evm_client.rpc_url_for(chain)
        signature = solana_scan.send_transfer(url, payer, chain.treasury_address, base_units, reference)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:  # until the cluster has confirmed it (a slot or two)
            try:
                solana_scan.check_signature(url, chain.treasury_address, signature)
                break
            except solana_scan.SignatureNotFound:
                time.sleep(0.2)
        return signature
    w3 = evm_client.web3_for(evm_client.rpc_url_for(chain))
    receiver = artifacts.contract(w3, "PaymentReceiver", chain.receiver_address)
    transaction = receiver.functions.deposit(bytes.fromhex(reference.removeprefix("0x"))).build_transaction(
        {
            "from": DEMO_PAYER.address,
            "value": base_units,
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(DEMO_PAYER.address, "pending"),
        }
    )
    signed = w3.eth.account.sign_transaction(transaction, DEMO_PAYER.private_key)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    if wait_seconds:  # until it is mined (the devnets make a block every second)
        w3.eth.wait_for_transaction_receipt(tx_hash, timeout=wait_seconds, poll_latency=0.2)
    return "0x" + tx_hash.hex().removeprefix("0x")
