"""The committed contracts/build/*.json are what `make contracts` builds from contracts/src."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from chain.evm import artifacts
from tests.needs import unavailable

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "contracts" / "build.js"


def test_committed_artifacts_match_a_fresh_build(tmp_path):
    node = shutil.which("node")
    if node is None:
        unavailable("Node.js is not installed: the contracts cannot be compiled here")
    if not (ROOT / "node_modules" / "solc").is_dir() or not (ROOT / "node_modules" / "@openzeppelin").is_dir():
        unavailable("node_modules lacks solc or @openzeppelin/contracts: run `make npm`")

    subprocess.run([node, str(BUILD_SCRIPT), str(tmp_path)], cwd=tmp_path, check=True, capture_output=True, timeout=300)

    fresh = {path.name: path.read_bytes() for path in tmp_path.glob("*.json")}
    committed = {path.name: path.read_bytes() for path in artifacts.BUILD_DIR.glob("*.json")}
    assert sorted(fresh) == sorted(committed), "contracts/build lists other contracts than contracts/src builds"
    stale = [name for name in sorted(fresh) if fresh[name] != committed[name]]
    assert not stale, f"contracts/build is stale for {stale}: run `make contracts` and commit contracts/build"


def test_every_contract_the_product_deploys_is_built():
    for name in artifacts.CONTRACTS:
        artifact = artifacts.load(name)
        assert artifact["abi"] and artifact["bytecode"].startswith("0x60") and len(artifact["deployedBytecode"]) > 2
