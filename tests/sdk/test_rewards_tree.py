"""spheron_sdk.rewards_tree builds the tree @openzeppelin/merkle-tree's StandardMerkleTree builds.

Checked three ways: hand-computed 1-, 2- and 3-leaf trees (hashes from eth_abi and web3's keccak,
not from the module), the real JS library run with `node` on the same values (roots, proofs and
the dumped file byte for byte, and the library loading our file), and the plain-Python keccak
against pycryptodome's. The contract accepting these proofs is tests/chain/test_reward_distributor.py.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak
from eth_abi import encode
from spheron_sdk import rewards_tree
from spheron_sdk.rewards_tree import RewardsTree, RewardsTreeError
from web3 import Web3

from tests.needs import unavailable

ROOT = Path(__file__).resolve().parents[2]
MERKLE_TREE_PACKAGE = ROOT / "node_modules" / "@openzeppelin" / "merkle-tree"

ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
CAROL = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
SPON = 10**18


def _leaf(account: str, amount: int) -> bytes:
    return Web3.keccak(Web3.keccak(encode(["address", "uint256"], [account, amount])))


def _pair(a: bytes, b: bytes) -> bytes:
    return Web3.keccak(min(a, b) + max(a, b))


def _hex(node: bytes) -> str:
    return "0x" + node.hex()


# --- keccak ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 31, 32, 64, 135, 136, 137, 271, 272, 273, 1000])
def test_plain_python_keccak_is_keccak256(length):
    data = random.Random(length).randbytes(length)
    expected = pycryptodome_keccak.new(digest_bits=256, data=data).digest()
    assert rewards_tree.keccak256_python(data) == expected == bytes(Web3.keccak(data))


def test_keccak_known_digests():
    # Ethereum's keccak256, not NIST SHA3-256 (which hashes "" to a7ffc6f8…).
    assert (
        rewards_tree.keccak256_python(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert rewards_tree.keccak256(b"abc").hex() == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"


def test_without_pycryptodome_the_same_tree_is_built(monkeypatch):
    amounts = {ALICE: 5 * SPON, BOB: 7 * SPON, CAROL: 1}
    with_library = RewardsTree.build(amounts)
    monkeypatch.setattr(rewards_tree, "_pycryptodome_keccak", None)

    assert RewardsTree.build(amounts) == with_library
    assert rewards_tree.checksum_address(ALICE.lower()) == ALICE


# --- hand-computed trees -----------------------------------------------------------------------------


def test_one_address_the_root_is_its_leaf_and_the_proof_is_empty():
    tree = RewardsTree.build({ALICE: 3 * SPON})

    assert tree.root == _hex(_leaf(ALICE, 3 * SPON))
    assert tree.proof(ALICE) == []
    assert rewards_tree.verify(tree.root, ALICE, 3 * SPON, [])


def test_two_addresses_hand_computed():
    tree = RewardsTree.build({ALICE: 5 * SPON, BOB: 7 * SPON})
    alice, bob = _leaf(ALICE, 5 * SPON), _leaf(BOB, 7 * SPON)

    assert tree.root == _hex(_pair(alice, bob))
    assert tree.proof(ALICE) == [_hex(bob)]
    assert tree.proof(BOB) == [_hex(alice)]
    # The flat array: root, then the leaves with the smaller hash last.
    assert tree.dump()["tree"] == [_hex(_pair(alice, bob)), _hex(max(alice, bob)), _hex(min(alice, bob))]


def test_three_addresses_hand_computed():
    amounts = {ALICE: 5 * SPON, BOB: 7 * SPON, CAROL: 11 * SPON}
    tree = RewardsTree.build(amounts)
    leaves = {account: _leaf(account, amount) for account, amount in amounts.items()}
    smallest, middle, largest = sorted(leaves.values())
    # tree = [root, H(middle, smallest), largest, middle, smallest]
    inner = _pair(middle, smallest)
    root = _pair(inner, largest)
    by_leaf = {leaf: account for account, leaf in leaves.items()}

    assert tree.root == _hex(root)
    assert tree.dump()["tree"] == [_hex(node) for node in (root, inner, largest, middle, smallest)]
    assert tree.proof(by_leaf[smallest]) == [_hex(middle), _hex(largest)]
    assert tree.proof(by_leaf[middle]) == [_hex(smallest), _hex(largest)]
    assert tree.proof(by_leaf[largest]) == [_hex(inner)]


def test_proofs_verify_and_wrong_claims_do_not():
    amounts = _random_amounts(9, seed=3)
    tree = RewardsTree.build(amounts)
    accounts = list(amounts)

    for account, amount in amounts.items():
        proof = tree.proof(account)
        assert rewards_tree.verify(tree.root, account, amount, proof)
        assert tree.amount(account.lower()) == amount
        assert not rewards_tree.verify(tree.root, account, amount ^ 1, proof)
    other = accounts[1]
    assert not rewards_tree.verify(tree.root, other, amounts[accounts[0]], tree.proof(accounts[0]))
    tampered = tree.proof(accounts[0])
    tampered[0] = "0x" + "00" * 32
    assert not rewards_tree.verify(tree.root, accounts[0], amounts[accounts[0]], tampered)
    assert not rewards_tree.verify("0x" + "11" * 32, accounts[0], amounts[accounts[0]], tree.proof(accounts[0]))
    with pytest.raises(KeyError, match="not in the rewards tree"):
        tree.proof("0x" + "12" * 20)


def test_the_order_the_amounts_come_in_does_not_change_the_file():
    amounts = _random_amounts(12, seed=5)
    reordered = dict(reversed(list(amounts.items())))

    assert RewardsTree.build(amounts).dumps() == RewardsTree.build(reordered).dumps()


@pytest.mark.parametrize(
    ("amounts", "message"),
    [
        ({}, "at least one address"),
        ({"0x1234": 1}, "40 hex digits"),
        ({ALICE: -1}, "integer from 0"),
        ({ALICE: 2**256}, "integer from 0"),
        ({ALICE: True}, "integer from 0"),
        ({ALICE: 1.5}, "integer from 0"),
        ({ALICE: 1, ALICE.lower(): 2}, "appears twice"),
    ],
)
def test_bad_amounts_are_refused(amounts, message):
    with pytest.raises(RewardsTreeError, match=message):
        RewardsTree.build(amounts)


# --- the published file --------------------------------------------------------------------------------


def test_dump_and_load_round_trip():
    tree = RewardsTree.build(_random_amounts(6, seed=8))
    text = tree.dumps()

    assert RewardsTree.load(text) == tree
    assert RewardsTree.load(json.loads(text)) == tree
    document = json.loads(text)
    assert list(document) == ["format", "leafEncoding", "tree", "values"]
    assert document["format"] == "standard-v1" and document["leafEncoding"] == ["address", "uint256"]
    assert all(isinstance(entry["value"][1], str) for entry in document["values"])


def _tampered(document: dict, change) -> dict:
    copy = json.loads(json.dumps(document))
    change(copy)
    return copy


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="simple-v1"), "unknown format"),
        (lambda d: d.update(leafEncoding=["address", "uint128"]), "leafEncoding"),
        (lambda d: d["tree"].__setitem__(0, "0x" + "00" * 32), "not the hash of its children"),
        (lambda d: d["tree"].__setitem__(-1, "0x" + "00" * 32), "invalid|not the leaf"),
        (lambda d: d["values"][0]["value"].__setitem__(1, str(int(d["values"][0]["value"][1]) + 1)), "not the leaf"),
        (lambda d: d["values"][0].update(treeIndex=0), "not a leaf of the tree"),
        (lambda d: d["values"][0].update(treeIndex=True), "must be an integer"),
        (lambda d: d["values"].append(d["values"][0]), "appears twice"),
        (lambda d: d["values"].pop(), "leaves but"),
        (lambda d: d["tree"].append("0x" + "00" * 32), "odd number"),
        (lambda d: d["values"][0]["value"].__setitem__(1, "0x10"), "integer from 0"),
        (lambda d: d.update(tree="nope"), "non-empty lists"),
    ],
)
def test_a_tampered_file_is_refused(change, message):
    document = RewardsTree.build(_random_amounts(5, seed=13)).dump()

    with pytest.raises(RewardsTreeError, match=message):
        RewardsTree.load(_tampered(document, change))


def test_a_file_that_is_not_json_is_refused():
    with pytest.raises(RewardsTreeError, match="not JSON"):
        RewardsTree.load("{not json")
    with pytest.raises(RewardsTreeError, match="JSON object"):
        RewardsTree.load("[]")


# --- the real library -------------------------------------------------------------------------------------

_JS = r"""
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const built = StandardMerkleTree.of(input.values, ["address", "uint256"]);
const loaded = StandardMerkleTree.load(input.ours);
process.stdout.write(JSON.stringify({
  root: built.root,
  dump: built.dump(),
  proofs: input.values.map((value) => built.getProof(value)),
  loadedRoot: loaded.root,
  loadedVerifies: input.values.map((value, i) => loaded.verify(value, built.getProof(value))),
  staticVerifies: input.values.map((value) =>
    StandardMerkleTree.verify(input.ours.tree[0], ["address", "uint256"], value, built.getProof(value))),
}));
"""


def _node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("Node.js is not installed: the JS merkle-tree cross-check cannot run")
    if not MERKLE_TREE_PACKAGE.is_dir():
        unavailable("node_modules lacks @openzeppelin/merkle-tree: run `make npm`")
    return node


def _random_amounts(count: int, *, seed: int) -> dict[str, int]:
    draw = random.Random(seed)
    amounts = {}
    for i in range(count):
        address = rewards_tree.checksum_address("0x" + draw.randbytes(20).hex())
        amounts[address] = (0, 1, 2**256 - 1)[i] if i < 3 else draw.randrange(10**24)
    return amounts


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 64, 101])
def test_the_javascript_library_builds_the_same_tree_and_reads_our_file(count):
    node = _node_or_skip()
    tree = RewardsTree.build(_random_amounts(count, seed=count))
    ours = tree.dump()
    values = [entry["value"] for entry in ours["values"]]

    completed = subprocess.run(
        [node, "-e", _JS],
        input=json.dumps({"values": values, "ours": ours}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    theirs = json.loads(completed.stdout)

    assert theirs["root"] == tree.root
    assert theirs["proofs"] == [tree.proof(value[0]) for value in values]
    assert theirs["dump"] == ours  # the published file is the library's dump, byte for byte as JSON
    assert theirs["loadedRoot"] == tree.root
    assert all(theirs["loadedVerifies"]) and all(theirs["staticVerifies"])
