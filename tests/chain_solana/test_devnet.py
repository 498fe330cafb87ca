"""The LiteSVM devnet speaks the Solana JSON-RPC protocol: what solana-py's client sends, in the
shapes it parses, with the errors a real RPC gives."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Finalized, Processed
from solders.hash import Hash
from solders.keypair import Keypair
from solders.signature import Signature

from chain.solana.base58 import b58decode, b58encode
from chain.solana.devnet import start_devnet
from chain.solana.scan import request_airdrop, transfer_transaction

SOL = 10**9
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def devnet():
    handle = start_devnet(slot_ms=0, finality_slots=4)
    yield handle
    handle.stop()


def rpc(url: str, method: str, params: list | None = None):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def signed_transfer(devnet, payer: Keypair, to: str, lamports: int, memo: str | None = "memo"):
    blockhash = rpc(devnet.url, "getLatestBlockhash", [{"commitment": "processed"}])["result"]["value"]["blockhash"]
    return transfer_transaction(payer, to, lamports, memo, Hash.from_string(blockhash))


@pytest.fixture
def payer(devnet):
    keypair = Keypair()
    request_airdrop(devnet.url, str(keypair.pubkey()), 2 * SOL)
    return keypair


def test_base58_round_trips():
    for data in (b"", b"\0", b"\0\0abc", bytes(range(256))):
        assert b58decode(b58encode(data)) == data
    assert b58encode(b"hello world") == "StV1DL6CwTryKyV"


def test_send_in_base58_and_read_back_in_each_encoding(devnet, payer):
    to = str(Keypair().pubkey())
    transaction = signed_transfer(devnet, payer, to, SOL // 10, "0x" + "ab" * 32)
    sent = rpc(devnet.url, "sendTransaction", [b58encode(bytes(transaction))])  # base58: the default
    signature = sent["result"]
    assert signature == str(transaction.signatures[0])
    devnet.devnet.advance(1)

    async def read():
        async with AsyncClient(devnet.url) as client:
            sig = Signature.from_string(signature)
            answers = {
                encoding: await client.get_transaction(sig, encoding, Confirmed, 0)
                for encoding in ("json", "jsonParsed", "base64")
            }
            return answers, await client.get_transaction(sig, "json", Finalized)

    answers, finalized = asyncio.run(read())
    raw = answers["json"].value
    assert raw.slot == 0 and raw.block_time is not None
    message = raw.transaction.transaction.message
    assert [str(key) for key in message.account_keys][:2] == [str(payer.pubkey()), to]
    assert raw.transaction.meta.post_balances[1] == SOL // 10
    parsed = json.loads(answers["jsonParsed"].value.to_json())
    instructions = parsed["transaction"]["message"]["instructions"]
    assert instructions[0]["parsed"] == {
        "type": "transfer",
        "info": {"source": str(payer.pubkey()), "destination": to, "lamports": SOL // 10},
    }
    assert instructions[1]["program"] == "spl-memo" and instructions[1]["parsed"] == "0x" + "ab" * 32
    assert bytes(answers["base64"].value.transaction.transaction) == bytes(transaction)
    assert finalized.value is None  # one slot old: confirmed, not finalized


def test_signature_statuses_follow_the_slots(devnet, payer):
    transaction = signed_transfer(devnet, payer, str(Keypair().pubkey()), SOL // 10)
    encoded = base64.b64encode(bytes(transaction)).decode()
    signature = rpc(devnet.url, "sendTransaction", [encoded, {"encoding": "base64"}])["result"]

    def status():
        return rpc(devnet.url, "getSignatureStatuses", [[signature, str(Signature.default())]])["result"]["value"]

    first, unknown = status()
    assert unknown is None
    assert (first["confirmationStatus"], first["confirmations"]) == ("processed", 0)
    devnet.devnet.advance(1)
    assert status()[0]["confirmationStatus"] == "confirmed"
    devnet.devnet.advance(3)
    assert (status()[0]["confirmationStatus"], status()[0]["confirmations"]) == ("finalized", None)


def test_slot_and_blockhash_by_commitment(devnet):
    devnet.devnet.advance(10)

    async def read():
        async with AsyncClient(devnet.url) as client:
            slots = [(await client.get_slot(c)).value for c in (Processed, Confirmed, Finalized)]
            height = (await client.get_block_height(Processed)).value
            hashes = [(await client.get_latest_blockhash(c)).value for c in (Processed, Finalized)]
            return slots, height, hashes

    slots, height, hashes = asyncio.run(read())
    assert slots == [10, 9, 6]
    assert height == 10
    assert hashes[0].blockhash != hashes[1].blockhash
    assert hashes[0].last_valid_block_height == 10 + 150


def test_signatures_for_address_newest_first_with_before_until_limit(devnet, payer):
    to = str(Keypair().pubkey())
    signatures = []
    for number in range(4):  # distinct memos: the same transfer twice in a slot is one transaction
        transaction = signed_transfer(devnet, payer, to, SOL // 100, f"transfer {number}")
        signatures.append(rpc(devnet.url, "sendTransaction", [b58encode(bytes(transaction))])["result"])
    devnet.devnet.advance(1)

    def listed(**config):
        config.setdefault("commitment", "confirmed")
        return [e["signature"] for e in rpc(devnet.url, "getSignaturesForAddress", [to, config])["result"]]

    newest_first = signatures[::-1]
    assert listed() == newest_first
    assert listed(limit=2) == newest_first[:2]
    assert listed(before=newest_first[0]) == newest_first[1:]
    assert listed(until=newest_first[2]) == newest_first[:2]
    assert listed(before=newest_first[0], until=newest_first[3], limit=5) == newest_first[1:3]
    assert listed(commitment="finalized") == []
    answer = rpc(devnet.url, "getSignaturesForAddress", [to, {"commitment": "processed"}])
    assert answer["error"]["code"] == -32602


def test_a_stale_blockhash_a_replay_and_a_forged_signature_are_refused(devnet, payer):
    to = str(Keypair().pubkey())
    old = signed_transfer(devnet, payer, to, SOL // 100)
    devnet.devnet.advance(151)
    answer = rpc(devnet.url, "sendTransaction", [b58encode(bytes(old))])
    assert answer["error"]["code"] == -32002 and answer["error"]["data"]["err"] == "BlockhashNotFound"

    fresh = signed_transfer(devnet, payer, to, SOL // 100)
    assert "result" in rpc(devnet.url, "sendTransaction", [b58encode(bytes(fresh))])
    replay = rpc(devnet.url, "sendTransaction", [b58encode(bytes(fresh))])
    assert replay["error"]["data"]["err"] == "AlreadyProcessed"

    forged = bytearray(bytes(signed_transfer(devnet, payer, to, SOL // 50)))
    forged[-1] ^= 1  # a different memo under the same signature
    answer = rpc(devnet.url, "sendTransaction", [b58encode(bytes(forged))])
    assert answer["error"]["code"] == -32003


def test_preflight_failure_carries_the_simulation(devnet, payer):
    transaction = signed_transfer(devnet, payer, str(Keypair().pubkey()), 100 * SOL)
    answer = rpc(devnet.url, "sendTransaction", [b58encode(bytes(transaction))])
    assert answer["error"]["code"] == -32002
    assert answer["error"]["data"]["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert answer["error"]["data"]["logs"]


def test_protocol_errors_and_batches(devnet):
    assert rpc(devnet.url, "getBlockProduction")["error"]["code"] == -32601
    assert rpc(devnet.url, "getBalance", ["not-a-key"])["error"]["code"] == -32602
    assert rpc(devnet.url, "getTransaction", ["zz"])["error"]["code"] == -32602
    body = json.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "getHealth"},
            {"jsonrpc": "2.0", "id": 2, "method": "getVersion"},
        ]
    ).encode()
    request = urllib.request.Request(devnet.url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answers = json.loads(response.read())
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[0]["result"] == "ok" and "solana-core" in answers[1]["result"]
    request = urllib.request.Request(devnet.url, b"{nope", {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["error"]["code"] == -32700


def test_module_entry_point_serves_rpc(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with socket.socket() as probe:  # a free port, released for the server to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "chain.solana.devnet", "--port", str(port), "--slot-ms", "50"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert rpc(url, "getHealth")["result"] == "ok"
                break
            except OSError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        first = rpc(url, "getSlot", [{"commitment": "processed"}])["result"]
        time.sleep(0.3)
        assert rpc(url, "getSlot", [{"commitment": "processed"}])["result"] > first
    finally:
        process.terminate()
        process.wait(timeout=10)
