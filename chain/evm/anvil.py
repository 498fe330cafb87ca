"""Local EVM nodes: anvil (Foundry) processes for the devnets and the tests.

The binary comes from the npm package `@foundry-rs/anvil` (`make` installs it into node_modules)
or from `ANVIL_BIN`. Each node runs with a real chain id (8453 for Base, 42161 for Arbitrum…),
so transactions are signed exactly as on the real chain, and optionally a block time, so blocks
(and confirmations) accrue with no traffic.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / "node_modules"

# npm's optional platform packages of @foundry-rs/anvil hold the native binary; running it
# directly (not the node wrapper in .bin) means signals reach anvil itself and Node.js is not
# needed at run time.
_PLATFORM_PACKAGES = {
    ("Linux", "x86_64"): "anvil-linux-amd64",
    ("Linux", "aarch64"): "anvil-linux-arm64",
    ("Darwin", "x86_64"): "anvil-darwin-amd64",
    ("Darwin", "arm64"): "anvil-darwin-arm64",
}


class DevAccount(NamedTuple):
    address: str
    private_key: str


# anvil's default accounts, derived from the public test mnemonic
# "test test test test test test test test test test test junk" (m/44'/60'/0'/0/i). Everyone
# knows these keys: they are for local devnets only (the chain app refuses them unless DEBUG).
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNTS: tuple[DevAccount, ...] = (
    DevAccount(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    DevAccount(
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    DevAccount(
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
    DevAccount(
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    ),
    DevAccount(
        "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    ),
    DevAccount(
        "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
        "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    ),
    DevAccount(
        "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
        "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    ),
    DevAccount(
        "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
        "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    ),
    DevAccount(
        "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
        "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    ),
    DevAccount(
        "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
        "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    ),
)
DEV_BALANCE_WEI = 10_000 * 10**18  # what anvil gives each dev account at genesis


_LISTENING = re.compile(rb"Listening on (\S+):(\d+)")


class AnvilError(RuntimeError):
    pass


def anvil_binary() -> str | None:
    """The anvil executable: `ANVIL_BIN`, else the one npm installed into node_modules; None if neither."""
    configured = os.environ.get("ANVIL_BIN")
    if configured:
        return configured if shutil.which(configured) else None
    package = _PLATFORM_PACKAGES.get((platform.system(), platform.machine()))
    if package:
        native = NODE_MODULES / "@foundry-rs" / package / "bin" / "anvil"
        if native.is_file() and os.access(native, os.X_OK):
            return str(native)
    wrapper = NODE_MODULES / ".bin" / "anvil"  # the node launcher: needs node on PATH
    if wrapper.exists() and shutil.which("node"):
        return str(wrapper)
    return None


def _rpc(url: str, method: str, params: list | None = None, *, timeout: float = 2.0):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.load(response)
    if "error" in answer:
        raise AnvilError(f"{method}: {answer['error']}")
    return answer["result"]


@dataclass
class AnvilProcess:
    """A running anvil node. `stop()` ends it (and dumps its state when it has a state file)."""

    process: subprocess.Popen
    url: str
    port: int
    chain_id: int
    block_time: float | None
    log_path: Path
    state_path: Path | None = None
    _owns_log: bool = field(default=False, repr=False)

    def rpc(self, method: str, params: list | None = None, *, timeout: float = 5.0):
        """A raw JSON-RPC call (anvil_* and evm_* methods that web3 does not wrap)."""
        return _rpc(self.url, method, params, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            # SIGINT: anvil's graceful shutdown, which writes --state before exiting.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._owns_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> AnvilProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_anvil(
    *,
    chain_id: int,
    port: int = 0,
    block_time: float | None = None,
    state_dir: Path | str | None = None,
    host: str = "127.0.0.1",
    log_path: Path | str | None = None,
    binary: str | None = None,
    extra_args: list[str] | None = None,
    timeout: float = 30.0,
) -> AnvilProcess:
    """Starts anvil and returns once it answers `eth_chainId` with `chain_id`.

    port=0 lets anvil pick a free port (read back from its "Listening on" line). block_time None:
    a block per transaction (automine); seconds otherwise (fractions allowed). state_dir: the
    chain's state is loaded from and saved to `<state_dir>/anvil-<chain_id>.json`, so a devnet
    keeps its contracts and balances across restarts. log_path: anvil's output (a temporary file,
    removed at stop, when not given).
    """
    binary = binary or anvil_binary()
    if binary is None:
        raise AnvilError("anvil not found: run `make npm` (installs node_modules) or set ANVIL_BIN")
    args = [
        binary,
        "--host",
        host,
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--accounts",
        str(len(DEV_ACCOUNTS)),
    ]
    if block_time is not None:
        args += ["--block-time", _seconds(block_time)]
    state_path = None
    if state_dir is not None:
        state_path = Path(state_dir) / f"anvil-{chain_id}.json"
        state_path.parent.mkdir(parents=True, exist_ok=True)
        args += ["--state", str(state_path)]
    args += list(extra_args or ())

    owns_log = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix=f"anvil-{chain_id}-", suffix=".log")
        os.close(handle)
        log_path = name
    log_path = Path(log_path)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    node = AnvilProcess(
        process=process,
        url="",
        port=port,
        chain_id=chain_id,
        block_time=block_time,
        log_path=log_path,
        state_path=state_path,
        _owns_log=owns_log,
    )
    try:
        _wait_until_ready(node, host=host, timeout=timeout)
    except Exception as error:
        owns, node._owns_log = node._owns_log, False  # keep the log for the error message
        node.stop()
        tail = log_path.read_bytes()[-2000:].decode(errors="replace") if log_path.exists() else ""
        if owns:
            log_path.unlink(missing_ok=True)
        raise AnvilError(f"anvil (chain id {chain_id}) did not start ({error}): {' '.join(args)}\n{tail}") from None
    except BaseException:  # Ctrl-C while waiting: no orphan node
        node.stop()
        raise
    return node


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _wait_until_ready(node: AnvilProcess, *, host: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not node.url:
        if node.process.poll() is not None:
            raise AnvilError("anvil exited")
        match = _LISTENING.search(node.log_path.read_bytes())
        if match:
            node.port = int(match.group(2))
            node.url = f"http://{host}:{node.port}"
        elif time.monotonic() > deadline:
            raise AnvilError("timed out waiting for anvil to listen")
        else:
            time.sleep(0.02)
    while True:
        if node.process.poll() is not None:
            raise AnvilError("anvil exited")
        try:
            answered = int(_rpc(node.url, "eth_chainId"), 16)
        except (OSError, urllib.error.URLError, AnvilError, ValueError):
            answered = None
        if answered == node.chain_id:
            return
        if answered is not None:
            raise AnvilError(f"anvil answers chain id {answered}, not {node.chain_id}")
        if time.monotonic() > deadline:
            raise AnvilError("timed out waiting for eth_chainId")
        time.sleep(0.05)
