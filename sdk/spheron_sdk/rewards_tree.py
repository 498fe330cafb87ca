"""The Merkle tree of cumulative $SPON rewards that `RewardDistributor` pays against.

After each era the platform publishes the tree of every provider address's cumulative rewards
(all eras so far) as a JSON file and sets its root on the distributor; a provider claims with
`claim(account, cumulativeAmount, proof)` and is paid `cumulativeAmount − claimed[account]`. This
module builds that tree from {address: cumulative amount in base units}, exactly as
OpenZeppelin's `StandardMerkleTree.of(values, ["address", "uint256"])` (@openzeppelin/merkle-tree
1.0.x) does, so anyone can rebuild the root from the published amounts, check the file, get a
proof and check one:

- leaf = keccak256(keccak256(abi.encode(address, uint256))) (double-hashed: a leaf can never be
  taken for an inner node);
- the leaves sorted by their hash (as 256-bit numbers, ascending), laid out in a flat array
  (`tree[0]` is the root, the children of i are 2i+1 and 2i+2, the leaves fill the end in
  reverse: the smallest leaf is last);
- an inner node = keccak256 of its two children sorted (so a proof needs no left/right flags);
- the JSON file is the library's `dump()`: {"format": "standard-v1", "leafEncoding": [...],
  "tree": [...], "values": [{"value": [address, amount as a decimal string], "treeIndex": i}]},
  which `StandardMerkleTree.load` reads, and `RewardsTree.load` reads back (checking every hash).

Pure Python and no Django: keccak-256 comes from pycryptodome when it is installed (the platform
has it) and from the plain-Python implementation below otherwise (same digests, tested against
each other; slower: a tree of a thousand addresses takes about a second to build).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FORMAT = "standard-v1"
LEAF_ENCODING = ("address", "uint256")
MAX_AMOUNT = 2**256 - 1

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_NODE = re.compile(r"0x[0-9a-fA-F]{64}")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,77})")


class RewardsTreeError(ValueError):
    """Amounts a tree cannot be built from, or a published tree that is not a valid one."""


# --- keccak-256 ------------------------------------------------------------------------------------

_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
# Rotation of lane (x, y), at index x + 5y.
_ROTATIONS = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)  # fmt: skip
# Where rho-and-pi moves lane x + 5y: to lane y + 5((2x + 3y) mod 5).
_PI_TARGET = tuple(y + 5 * ((2 * x + 3 * y) % 5) for y in range(5) for x in range(5))
_MASK = (1 << 64) - 1
_RATE = 136  # bytes: 1600 − 2 × 256 bits


# (lane index, where rho-and-pi moves it, its left rotation, 64 − that)
_STEPS = tuple((i, _PI_TARGET[i], _ROTATIONS[i], 64 - _ROTATIONS[i]) for i in range(25))


def _keccak_f(lanes: list[int]) -> None:
    """The Keccak-f[1600] permutation, in place, on 25 little-endian 64-bit lanes (theta spelt out:
    this is the loop every hash of the plain-Python path spends its time in)."""
    mask = _MASK
    moved = [0] * 25
    for round_constant in _ROUND_CONSTANTS:
        c0 = lanes[0] ^ lanes[5] ^ lanes[10] ^ lanes[15] ^ lanes[20]
        c1 = lanes[1] ^ lanes[6] ^ lanes[11] ^ lanes[16] ^ lanes[21]
        c2 = lanes[2] ^ lanes[7] ^ lanes[12] ^ lanes[17] ^ lanes[22]
        c3 = lanes[3] ^ lanes[8] ^ lanes[13] ^ lanes[18] ^ lanes[23]
        c4 = lanes[4] ^ lanes[9] ^ lanes[14] ^ lanes[19] ^ lanes[24]
        theta = (
            c4 ^ (((c1 << 1) | (c1 >> 63)) & mask),
            c0 ^ (((c2 << 1) | (c2 >> 63)) & mask),
            c1 ^ (((c3 << 1) | (c3 >> 63)) & mask),
            c2 ^ (((c4 << 1) | (c4 >> 63)) & mask),
            c3 ^ (((c0 << 1) | (c0 >> 63)) & mask),
        )
        for i, target, left, right in _STEPS:
            lane = lanes[i] ^ theta[i % 5]
            moved[target] = ((lane << left) | (lane >> right)) & mask
        for row in (0, 5, 10, 15, 20):
            a, b, c, d, e = moved[row : row + 5]
            lanes[row] = a ^ (~b & c)
            lanes[row + 1] = b ^ (~c & d)
            lanes[row + 2] = c ^ (~d & e)
            lanes[row + 3] = d ^ (~e & a)
            lanes[row + 4] = e ^ (~a & b)
        lanes[0] ^= round_constant


def keccak256_python(data: bytes) -> bytes:
    """Ethereum's keccak256 (Keccak with the original 0x01 padding, not NIST SHA3-256) in plain Python."""
    padded = bytearray(data)
    padded.append(0x01)
    padded.extend(b"\x00" * (-len(padded) % _RATE))
    padded[-1] |= 0x80
    lanes = [0] * 25
    for start in range(0, len(padded), _RATE):
        for i in range(_RATE // 8):
            lanes[i] ^= int.from_bytes(padded[start + 8 * i : start + 8 * i + 8], "little")
        _keccak_f(lanes)
    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])


try:  # pycryptodome (the platform's web3 brings it): the same digest, much faster
    from Crypto.Hash import keccak as _pycryptodome_keccak
except ImportError:  # pragma: no cover - depends on what is installed
    _pycryptodome_keccak = None


def keccak256(data: bytes) -> bytes:
    """keccak256(data), as Solidity's `keccak256`."""
    if _pycryptodome_keccak is not None:
        return _pycryptodome_keccak.new(digest_bits=256, data=data).digest()
    return keccak256_python(data)


# --- Leaves, nodes, proofs -------------------------------------------------------------------------


def checksum_address(address: str) -> str:
    """The EIP-55 (mixed-case) form of a 0x-prefixed 20-byte hex address."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise RewardsTreeError(f"an address is 0x and 40 hex digits, got {address!r}")
    digits = address[2:].lower()
    digest = keccak256(digits.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits, digest[:40], strict=True))


def _amount(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
        raise RewardsTreeError(f"a cumulative amount is an integer from 0 to 2**256 − 1 (base units), got {value!r}")
    return value


def leaf_hash(account: str, cumulative_amount: int) -> bytes:
    """keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount)))): the contract's leaf."""
    if not isinstance(account, str) or not _ADDRESS.fullmatch(account):
        raise RewardsTreeError(f"an address is 0x and 40 hex digits, got {account!r}")
    encoded = bytes(12) + bytes.fromhex(account[2:]) + _amount(cumulative_amount).to_bytes(32, "big")
    return keccak256(keccak256(encoded))


def node_hash(a: bytes, b: bytes) -> bytes:
    """An inner node: keccak256 of the two children, the smaller first (OpenZeppelin's commutative hash)."""
    return keccak256(a + b if a <= b else b + a)


def process_proof(leaf: bytes, proof: Iterable[bytes]) -> bytes:
    """The root a leaf and its proof lead to (MerkleProof.processProof)."""
    computed = leaf
    for sibling in proof:
        computed = node_hash(computed, sibling)
    return computed


def _node_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes | bytearray) and len(value) == 32:
        return bytes(value)
    if isinstance(value, str) and _NODE.fullmatch(value):
        return bytes.fromhex(value[2:])
    raise RewardsTreeError(f"{what} is 32 bytes (0x and 64 hex digits), got {value!r}")


def verify(root: str | bytes, account: str, cumulative_amount: int, proof: Iterable[str | bytes]) -> bool:
    """Whether `proof` proves (account, cumulative_amount) against `root`: what the contract checks."""
    siblings = [_node_bytes(node, "a proof element") for node in proof]
    return process_proof(leaf_hash(account, cumulative_amount), siblings) == _node_bytes(root, "the root")


def _hex(node: bytes) -> str:
    return "0x" + node.hex()


# --- The tree ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardsTree:
    """A built (or loaded) tree. `nodes` is the flat array (`nodes[0]` the root); `values` lists
    (checksummed address, cumulative amount, index of its leaf in `nodes`), sorted by address."""

    nodes: tuple[bytes, ...]
    values: tuple[tuple[str, int, int], ...]
    _by_address: dict[str, tuple[str, int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_address", {entry[0].lower(): entry for entry in self.values})

    @classmethod
    def build(cls, amounts: Mapping[str, int]) -> RewardsTree:
        """The tree of {address: cumulative amount in base units}; at least one address. An address
        written twice (in another letter case) is refused: one account, one leaf."""
        if not amounts:
            raise RewardsTreeError("a rewards tree needs at least one address")
        entries: dict[str, tuple[str, int]] = {}
        for address, amount in amounts.items():
            checksummed = checksum_address(address)
            key = checksummed.lower()
            if key in entries:
                raise RewardsTreeError(f"address {checksummed} appears twice")
            entries[key] = (checksummed, _amount(amount))
        ordered = [entries[key] for key in sorted(entries)]
        leaves = [leaf_hash(address, amount) for address, amount in ordered]
        # The library sorts leaves by hash as numbers; equal-length big-endian bytes sort the same.
        by_hash = sorted(range(len(leaves)), key=leaves.__getitem__)
        size = 2 * len(leaves) - 1
        nodes: list[bytes] = [b""] * size
        tree_index = [0] * len(leaves)
        for position, value_index in enumerate(by_hash):
            nodes[size - 1 - position] = leaves[value_index]
            tree_index[value_index] = size - 1 - position
        for i in range(size - 1 - len(leaves), -1, -1):
            nodes[i] = node_hash(nodes[2 * i + 1], nodes[2 * i + 2])
        values = tuple((address, amount, tree_index[i]) for i, (address, amount) in enumerate(ordered))
        return cls(nodes=tuple(nodes), values=values)

    @property
    def root(self) -> str:
        """The root to set on the distributor (0x and 64 hex digits)."""
        return _hex(self.nodes[0])

    def amounts(self) -> dict[str, int]:
        """{checksummed address: cumulative amount}."""
        return {address: amount for address, amount, _ in self.values}

    def _entry(self, account: str) -> tuple[str, int, int]:
        key = checksum_address(account)
        try:
            return self._by_address[key.lower()]
        except KeyError:
            raise KeyError(f"{key} is not in the rewards tree") from None

    def amount(self, account: str) -> int:
        """The account's cumulative amount in the tree (KeyError if it has none)."""
        return self._entry(account)[1]

    def proof(self, account: str) -> list[str]:
        """The proof of the account's leaf, as the contract's `bytes32[] proof` (hex strings)."""
        index = self._entry(account)[2]
        proof = []
        while index > 0:
            sibling = index + 1 if index % 2 else index - 1
            proof.append(_hex(self.nodes[sibling]))
            index = (index - 1) // 2
        return proof

    def dump(self) -> dict[str, Any]:
        """The published file's content: @openzeppelin/merkle-tree's `StandardMerkleTree.dump()`."""
        return {
            "format": FORMAT,
            "leafEncoding": list(LEAF_ENCODING),
            "tree": [_hex(node) for node in self.nodes],
            "values": [{"value": [address, str(amount)], "treeIndex": index} for address, amount, index in self.values],
        }

    def dumps(self) -> str:
        """The published file (JSON text, keys in the library's order)."""
        return json.dumps(self.dump(), indent=2) + "\n"

    @classmethod
    def load(cls, data: Mapping[str, Any] | str | bytes) -> RewardsTree:
        """A tree from a published file (its JSON text, or the parsed object), checked as
        `StandardMerkleTree.load` checks it: the format, the encoding, every value's leaf where its
        treeIndex says and every inner node the hash of its children. Raises RewardsTreeError."""
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except (ValueError, UnicodeDecodeError) as exc:
                raise RewardsTreeError(f"the rewards tree is not JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise RewardsTreeError("the rewards tree is a JSON object")
        if data.get("format") != FORMAT:
            raise RewardsTreeError(f"unknown format {data.get('format')!r} (expected {FORMAT!r})")
        if data.get("leafEncoding") != list(LEAF_ENCODING):
            raise RewardsTreeError(f"leafEncoding must be {list(LEAF_ENCODING)}, got {data.get('leafEncoding')!r}")
        raw_nodes, raw_values = data.get("tree"), data.get("values")
        if not isinstance(raw_nodes, list) or not raw_nodes or not isinstance(raw_values, list) or not raw_values:
            raise RewardsTreeError("tree and values must be non-empty lists")
        nodes = tuple(_node_bytes(node, f"tree[{i}]") for i, node in enumerate(raw_nodes))
        if len(nodes) % 2 == 0:
            raise RewardsTreeError(f"a tree has an odd number of nodes, this one has {len(nodes)}")
        first_leaf = len(nodes) // 2
        for i in range(first_leaf):
            if nodes[i] != node_hash(nodes[2 * i + 1], nodes[2 * i + 2]):
                raise RewardsTreeError(f"tree[{i}] is not the hash of its children: the tree is invalid")
        values = []
        seen: set[str] = set()
        for i, entry in enumerate(raw_values):
            value = entry.get("value") if isinstance(entry, Mapping) else None
            tree_index = entry.get("treeIndex") if isinstance(entry, Mapping) else None
            if not isinstance(value, list) or len(value) != 2:
                raise RewardsTreeError(f"values[{i}].value must be [address, amount]")
            if isinstance(tree_index, bool) or not isinstance(tree_index, int):
                raise RewardsTreeError(f"values[{i}].treeIndex must be an integer")
            if not first_leaf <= tree_index < len(nodes):
                raise RewardsTreeError(f"values[{i}].treeIndex {tree_index} is not a leaf of the tree")
            address, amount = value
            if isinstance(amount, str) and _DECIMAL.fullmatch(amount):
                amount = int(amount)
            address = checksum_address(address)
            if address.lower() in seen:
                raise RewardsTreeError(f"address {address} appears twice")
            seen.add(address.lower())
            if nodes[tree_index] != leaf_hash(address, _amount(amount)):
                raise RewardsTreeError(f"values[{i}] ({address}, {amount}) is not the leaf at tree[{tree_index}]")
            values.append((address, amount, tree_index))
        if len(values) != len(nodes) - first_leaf:
            raise RewardsTreeError(f"{len(nodes) - first_leaf} leaves but {len(values)} values")
        return cls(nodes=nodes, values=tuple(values))
