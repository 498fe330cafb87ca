"""spheron_sdk.matching.verify_match checks a proof's commitment against LeaseRegistry on chain.

The registry is the real contract, deployed on anvil; the platform's side (recording) is played by
the deployer through web3, the renter's side by the SDK alone, over the node's JSON-RPC URL.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from eth_utils import function_signature_to_4byte_selector
from spheron_sdk import matching, onchain

from tests.chain_fixtures import DEPLOYER, TREASURY

ROOT = Path(__file__).resolve().parents[2]

CANDIDATES = [
    {"node_id": 11, "price_per_hour_micros": 300_000, "stake": "5000", "uptime_30d": "0.99",
     "trust_tier": 2, "fit": "0.9", "distance_km": 120, "slashes": 0},
    {"node_id": 12, "price_per_hour_micros": 250_000, "stake": "1000", "uptime_30d": "0.95",
     "trust_tier": 3, "fit": "0.8", "distance_km": 800, "slashes": 1},
    {"node_id": 13, "price_per_hour_micros": 400_000, "stake": "9000", "uptime_30d": "0.90",
     "trust_tier": 1, "fit": "1", "distance_km": None, "slashes": 0},
]  # fmt: skip
WEIGHTS = {"price": "0.3", "uptime": "0.2", "reputation": "0.15", "stake": "0.15", "proximity": "0.1",
           "fit": "0.05", "random": "0.05"}  # fmt: skip


def make_proof(order_id: int = 41) -> dict:
    """A proof as the match-proof endpoint publishes it: the inputs, the winner, the commitment."""
    seed = f"seed-of-order-{order_id}"
    winner = matching.score_candidates(CANDIDATES, WEIGHTS, seed)[0]["node_id"]
    document = matching.match_document(
        order_id=order_id, spec_hash="ab" * 32, candidates=CANDIDATES, weights=WEIGHTS, seed=seed, winner=winner
    )
    return {
        "order_id": order_id,
        "spec_hash": "ab" * 32,
        "candidates": CANDIDATES,
        "weights": WEIGHTS,
        "seed": seed,
        "winner": winner,
        "commitment": matching.commitment(document),
    }


def record(node, lease_id: int, commitment_hex: str) -> None:
    """What the platform's recorder does: LeaseRegistry.record(bytes32(uint256(lease_id)), commitment)."""
    registry = node.contract("LeaseRegistry")
    tx = registry.functions.record(onchain.lease_key(lease_id), onchain.commitment_word(commitment_hex)).transact(
        {"from": DEPLOYER.address}
    )
    assert node.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def fake_rpc() -> Iterator[Callable[..., str]]:
    """A JSON-RPC endpoint that answers every request with the body given."""
    servers = []

    def start(body: object, status: int = 200) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- without the chain -------------------------------------------------------------------------


def test_the_hard_coded_selector_is_commitment_of_in_the_registry_abi():
    abi = json.loads((ROOT / "contracts" / "build" / "LeaseRegistry.json").read_text())["abi"]
    (function,) = [item for item in abi if item.get("type") == "function" and item["name"] == "commitmentOf"]
    signature = f"commitmentOf({','.join(arg['type'] for arg in function['inputs'])})"
    assert function_signature_to_4byte_selector(signature).hex() == onchain.COMMITMENT_OF_SELECTOR


def test_the_lease_key_is_the_integer_id_big_endian_in_32_bytes():
    assert onchain.lease_key(1) == b"\x00" * 31 + b"\x01"
    assert onchain.lease_key(0x0102) == b"\x00" * 30 + b"\x01\x02"
    for bad in (0, -1, 2**256, True, "7"):
        with pytest.raises(ValueError):
            onchain.lease_key(bad)


def test_a_match_commitment_is_exactly_one_bytes32():
    assert len(onchain.commitment_word(make_proof()["commitment"])) == 32
    with pytest.raises(ValueError):
        onchain.commitment_word("ab" * 31)


def test_without_an_rpc_url_verification_is_offline_and_unchanged():
    proof = make_proof()
    result = matching.verify_match(proof)
    assert result["ok"] and "on_chain" not in result
    # a proof naming the registry but no RPC URL: still nothing to ask
    proof["chain"] = {"registry": "0x" + "11" * 20, "lease_id": 5, "chain_id": 8453}
    assert "on_chain" not in matching.verify_match(proof)


def test_an_rpc_url_without_registry_or_lease_is_a_clear_error():
    with pytest.raises(ValueError, match="registry, lease_id"):
        matching.verify_match(make_proof(), rpc_url="http://127.0.0.1:1")


def test_an_unreachable_rpc_is_an_error_not_a_verdict():
    with pytest.raises(onchain.RpcUnreachableError, match="unreachable") as caught:
        matching.verify_match(make_proof(), rpc_url=closed_port_url(), registry="0x" + "11" * 20, lease_id=5)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"jsonrpc": "2.0", "id": 1, "result": "0x1234"}, 200, onchain.MalformedAnswerError),
        ({"jsonrpc": "2.0", "id": 1, "result": 7}, 200, onchain.MalformedAnswerError),
        ({"jsonrpc": "2.0", "id": 1}, 200, onchain.MalformedAnswerError),
        ("<html>bad gateway</html>", 502, onchain.RpcUnreachableError),
        ("not json", 200, onchain.RpcUnreachableError),
        (
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "rate limited"}},
            200,
            onchain.RpcRefusedError,
        ),
    ],
)
def test_a_malformed_answer_is_an_error_not_a_verdict(fake_rpc, body, status, error):
    url = fake_rpc(body, status)
    with pytest.raises(error):
        matching.verify_match(make_proof(), rpc_url=url, registry="0x" + "11" * 20, lease_id=5)


# --- on anvil ----------------------------------------------------------------------------------


def test_a_recorded_commitment_verifies_on_chain(anvil):
    node = anvil(deploy=True)
    registry = node.contracts["LeaseRegistry"]
    proof = make_proof()
    record(node, 41, proof["commitment"])

    result = matching.verify_match(proof, rpc_url=node.url, registry=registry, lease_id=41)

    assert result["ok"] is True
    assert result["on_chain"] == {
        "recorded": True,
        "matches": True,
        "commitment": "0x" + proof["commitment"],
        "registry": registry,
        "lease_id": 41,
        "chain_id": None,
        "problem": None,
    }
    # the same, with everything but the RPC URL carried by the proof, as the server will publish it
    proof["chain"] = {"registry": registry, "lease_id": 41, "chain_id": node.chain_id}
    carried = matching.verify_match(proof, rpc_url=node.url)
    assert carried["ok"] and carried["on_chain"]["matches"] and carried["on_chain"]["chain_id"] == node.chain_id
    proof["chain"]["rpc_url"] = node.url
    assert matching.verify_match(proof)["on_chain"]["matches"]


def test_another_commitment_on_chain_fails_the_proof(anvil):
    node = anvil(deploy=True)
    registry = node.contracts["LeaseRegistry"]
    proof = make_proof()
    other = make_proof(order_id=42)["commitment"]
    record(node, 41, other)

    result = matching.verify_match(proof, rpc_url=node.url, registry=registry, lease_id=41)

    assert result["winner_ok"] and result["commitment_ok"]  # the proof is consistent in itself…
    assert result["ok"] is False  # …but not what the platform committed to
    assert result["on_chain"]["recorded"] is True
    assert result["on_chain"]["matches"] is False
    assert result["on_chain"]["commitment"] == "0x" + other
    assert "differs" in result["on_chain"]["problem"]


def test_nothing_recorded_for_the_lease_fails_the_proof(anvil):
    node = anvil(deploy=True)
    registry = node.contracts["LeaseRegistry"]
    proof = make_proof()
    record(node, 40, proof["commitment"])  # another lease: the key is the lease id, not the proof

    result = matching.verify_match(proof, rpc_url=node.url, registry=registry, lease_id=41)

    assert result["ok"] is False
    assert result["on_chain"]["recorded"] is False
    assert result["on_chain"]["matches"] is False
    assert result["on_chain"]["commitment"] is None
    assert "no commitment" in result["on_chain"]["problem"]


def test_a_registry_address_that_is_not_a_registry_is_an_error(anvil):
    node = anvil(deploy=True)
    proof = make_proof()
    with pytest.raises(onchain.NotAContractError, match="no contract"):
        matching.verify_match(proof, rpc_url=node.url, registry=TREASURY.address, lease_id=41)
    with pytest.raises(onchain.NotAContractError, match="does not answer commitmentOf"):
        matching.verify_match(proof, rpc_url=node.url, registry=node.contracts["SponToken"], lease_id=41)


def test_an_rpc_serving_another_chain_than_the_proofs_is_an_error(anvil):
    node = anvil(chain_id=31337, deploy=True)
    proof = make_proof()
    proof["chain"] = {"registry": node.contracts["LeaseRegistry"], "lease_id": 41, "chain_id": 8453}
    with pytest.raises(onchain.OnChainError, match="serves chain 31337"):
        matching.verify_match(proof, rpc_url=node.url)
