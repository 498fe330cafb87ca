"""Read a lease's match commitment from the `LeaseRegistry` contract through any public JSON-RPC URL.

The platform publishes each lease's commitment (spheron_sdk.matching.commitment of its match
document) as `record(leaseId, commitment)`, with `leaseId = bytes32(uint256(lease_id))`: the
platform's integer lease id, big-endian, 32 bytes. Anyone can then read it back with
`commitmentOf(leaseId)`; this module does that with one raw `eth_call` over httpx, so a renter
needs no web3 library and nothing from the platform but the proof.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

# First 4 bytes of keccak256("commitmentOf(bytes32)"), computed once with
# eth_utils.function_signature_to_4byte_selector (the SDK has no keccak of its own);
# tests/sdk/test_onchain_verify.py recomputes it from contracts/build/LeaseRegistry.json.
COMMITMENT_OF_SELECTOR = "a10bb806"

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_WORD = re.compile(r"0x[0-9a-fA-F]{64}")
_ZERO_WORD = "0x" + "00" * 32


class OnChainError(ValueError):
    """The chain could not be asked, or its answer makes no sense; the proof is neither confirmed
    nor refuted by it."""


class RpcUnreachableError(OnChainError):
    """The RPC URL did not answer (connection refused, timeout, HTTP error, not JSON-RPC)."""


class NotAContractError(OnChainError):
    """No contract (or not a LeaseRegistry) at the registry address on that chain."""


class MalformedAnswerError(OnChainError):
    """The RPC answered with something that is not a 32-byte word."""


class RpcRefusedError(OnChainError):
    """The node answered with a JSON-RPC error (a revert, an unknown method…)."""


def lease_key(lease_id: int) -> bytes:
    """The lease's on-chain id: `bytes32(uint256(lease_id))`."""
    if isinstance(lease_id, bool) or not isinstance(lease_id, int) or not 0 < lease_id < 2**256:
        raise ValueError(f"lease_id must be a positive integer below 2**256, got {lease_id!r}")
    return lease_id.to_bytes(32, "big")


def commitment_word(commitment: str) -> bytes:
    """A match commitment (64 hex digits, with or without 0x) as the bytes32 recorded on chain."""
    digits = commitment.removeprefix("0x")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", digits):
        raise ValueError(f"a commitment is 64 hex digits (32 bytes), got {commitment!r}")
    return bytes.fromhex(digits)


def _checked_address(registry: str) -> str:
    if not isinstance(registry, str) or not _ADDRESS.fullmatch(registry):
        raise ValueError(f"registry must be a 0x-prefixed 20-byte hex address, got {registry!r}")
    return registry.lower()


def rpc_call(rpc_url: str, method: str, params: list[Any], *, timeout: float = 10) -> Any:
    """One JSON-RPC request; its `result`. Errors from the node raise OnChainError with its message."""
    try:
        response = httpx.post(
            rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=timeout
        )
    except httpx.HTTPError as exc:  # connection refused, DNS, timeout, invalid URL scheme…
        raise RpcUnreachableError(f"the RPC at {rpc_url} is unreachable: {exc}") from exc
    except ValueError as exc:  # a URL httpx cannot even parse
        raise RpcUnreachableError(f"the RPC URL {rpc_url!r} is not usable: {exc}") from exc
    if response.status_code != 200:
        raise RpcUnreachableError(f"the RPC at {rpc_url} answered HTTP {response.status_code} to {method}")
    try:
        answer = response.json()
    except ValueError as exc:
        raise RpcUnreachableError(f"the RPC at {rpc_url} did not answer JSON-RPC to {method}") from exc
    if not isinstance(answer, dict):
        raise MalformedAnswerError(f"the RPC at {rpc_url} answered {method} with {answer!r}")
    if answer.get("error") is not None:
        error = answer["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RpcRefusedError(f"the RPC at {rpc_url} refused {method}: {message}")
    if "result" not in answer:
        raise MalformedAnswerError(f"the RPC at {rpc_url} answered {method} without a result: {answer!r}")
    return answer["result"]


def commitment_of(*, rpc_url: str, registry: str, lease_id: int, timeout: float = 10) -> str | None:
    """The commitment `LeaseRegistry.commitmentOf` holds for the lease ("0x" + 64 hex digits,
    lowercase), or None if none is recorded (the contract answers zero)."""
    address = _checked_address(registry)
    data = "0x" + COMMITMENT_OF_SELECTOR + lease_key(lease_id).hex()
    call = {"to": address, "data": data}
    try:
        result = rpc_call(rpc_url, "eth_call", [call, "latest"], timeout=timeout)
    except RpcRefusedError as exc:
        if _has_no_code(rpc_url, address, timeout):
            raise NotAContractError(f"no contract at {registry} on the chain of {rpc_url}") from exc
        if "revert" in str(exc).lower():  # some contract is there, but it has no commitmentOf
            raise NotAContractError(f"the contract at {registry} does not answer commitmentOf: {exc}") from exc
        raise  # rate limits and the like: the node's own words
    if result == "0x":  # a call to an account without code succeeds with no data
        if _has_no_code(rpc_url, address, timeout):
            raise NotAContractError(f"no contract at {registry} on the chain of {rpc_url}")
        raise MalformedAnswerError(f"the contract at {registry} answered commitmentOf with no data")
    if not isinstance(result, str) or not _WORD.fullmatch(result):
        raise MalformedAnswerError(f"commitmentOf answered {result!r}, not a 32-byte word")
    result = result.lower()
    return None if result == _ZERO_WORD else result


def chain_id(*, rpc_url: str, timeout: float = 10) -> int:
    result = rpc_call(rpc_url, "eth_chainId", [], timeout=timeout)
    try:
        return int(result, 16)
    except (TypeError, ValueError) as exc:
        raise MalformedAnswerError(f"eth_chainId answered {result!r}") from exc


def _has_no_code(rpc_url: str, address: str, timeout: float) -> bool:
    code = rpc_call(rpc_url, "eth_getCode", [address, "latest"], timeout=timeout)
    return code in ("0x", "0x0", None)


def check_commitment(
    *,
    commitment: str,
    rpc_url: str,
    registry: str,
    lease_id: int,
    expected_chain_id: int | None = None,
    timeout: float = 10,
) -> dict[str, Any]:
    """Compare `commitment` with what the registry holds for the lease: {"recorded", "matches",
    "commitment" (the chain's, or None), "registry", "lease_id", "chain_id", "problem"}. With
    `expected_chain_id`, an RPC serving another chain is an error rather than "not recorded"."""
    expected = "0x" + commitment_word(commitment).hex()
    served_chain = None
    if expected_chain_id is not None:
        served_chain = chain_id(rpc_url=rpc_url, timeout=timeout)
        if served_chain != int(expected_chain_id):
            raise OnChainError(
                f"the RPC at {rpc_url} serves chain {served_chain}, the proof's commitment is on chain "
                f"{expected_chain_id}"
            )
    on_chain = commitment_of(rpc_url=rpc_url, registry=registry, lease_id=lease_id, timeout=timeout)
    matches = on_chain == expected
    if on_chain is None:
        problem = "no commitment is recorded on chain for this lease"
    elif not matches:
        problem = "the commitment recorded on chain differs from the proof's"
    else:
        problem = None
    return {
        "recorded": on_chain is not None,
        "matches": matches,
        "commitment": on_chain,
        "registry": registry,
        "lease_id": lease_id,
        "chain_id": served_chain,
        "problem": problem,
    }
