"""SOL deposits through the JSON-RPC path: the scanner reads the LiteSVM devnet over HTTP only,
the way it reads a real RPC."""

from __future__ import annotations

import base64
import secrets
import time

import pytest
from solders.hash import Hash
from solders.keypair import Keypair

from chain.solana.devnet import start_devnet
from chain.solana.scan import (
    InvalidSignature,
    SignatureNotFound,
    SolanaRpcError,
    TransactionFailed,
    check_signature,
    get_balance,
    request_airdrop,
    scan_transfers,
    send_transfer,
    transfer_transaction,
    transfers_in_transaction,
)

SOL = 10**9
FINALITY_SLOTS = 4


@pytest.fixture
def devnet():
    # No ticker: the tests let slots pass with advance(), so finality is deterministic.
    handle = start_devnet(slot_ms=0, finality_slots=FINALITY_SLOTS)
    yield handle
    handle.stop()


@pytest.fixture
def payer(devnet):
    keypair = Keypair()
    request_airdrop(devnet.url, str(keypair.pubkey()), 5 * SOL)
    return keypair


@pytest.fixture
def treasury():
    return str(Keypair().pubkey())


def reference() -> str:
    return "0x" + secrets.token_bytes(32).hex()


def test_airdrop_funds_the_payer(devnet, payer):
    assert get_balance(devnet.url, str(payer.pubkey())) == 5 * SOL


def test_transfers_with_and_without_memo_are_both_found(devnet, payer, treasury):
    ref = reference()
    with_memo = send_transfer(devnet.url, payer, treasury, SOL // 10, ref)
    without_memo = send_transfer(devnet.url, payer, treasury, SOL // 5)
    devnet.devnet.advance(1)

    transfers = scan_transfers(devnet.url, treasury)

    assert [t.signature for t in transfers] == [without_memo, with_memo]  # newest first
    by_signature = {t.signature: t for t in transfers}
    paid = by_signature[with_memo]
    assert paid.memo == ref
    assert paid.lamports == SOL // 10
    assert paid.payer == str(payer.pubkey())
    assert paid.recipient == treasury
    assert paid.instruction_index == 0
    assert paid.block_time is not None and abs(paid.block_time - time.time()) < 60
    assert by_signature[without_memo].memo is None
    assert by_signature[without_memo].lamports == SOL // 5
    assert get_balance(devnet.url, treasury) == SOL // 10 + SOL // 5


def test_a_transfer_is_seen_once_confirmed_and_finalized_after_enough_slots(devnet, payer, treasury):
    signature = send_transfer(devnet.url, payer, treasury, SOL // 10, reference())
    assert scan_transfers(devnet.url, treasury) == []  # processed, not yet confirmed

    devnet.devnet.advance(1)
    [seen] = scan_transfers(devnet.url, treasury)
    assert seen.signature == signature and not seen.finalized

    devnet.devnet.advance(FINALITY_SLOTS - 2)
    assert not scan_transfers(devnet.url, treasury)[0].finalized

    devnet.devnet.advance(1)
    assert scan_transfers(devnet.url, treasury)[0].finalized
    assert check_signature(devnet.url, treasury, signature)[0].finalized


def test_slots_pass_by_themselves_with_the_ticker(treasury):
    handle = start_devnet(slot_ms=20, finality_slots=3)
    try:
        payer = Keypair()
        request_airdrop(handle.url, str(payer.pubkey()), SOL)
        send_transfer(handle.url, payer, treasury, SOL // 10, reference())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            transfers = scan_transfers(handle.url, treasury)
            if transfers and transfers[0].finalized:
                break
            time.sleep(0.05)
        assert transfers and transfers[0].finalized
    finally:
        handle.stop()


def test_scan_stops_at_the_cursor_and_honours_the_limit(devnet, payer, treasury):
    first = send_transfer(devnet.url, payer, treasury, SOL // 100, reference())
    second = send_transfer(devnet.url, payer, treasury, SOL // 100, reference())
    third = send_transfer(devnet.url, payer, treasury, SOL // 100, reference())
    devnet.devnet.advance(1)

    assert [t.signature for t in scan_transfers(devnet.url, treasury, until_signature=first)] == [
        third,
        second,
    ]
    assert [t.signature for t in scan_transfers(devnet.url, treasury, limit=1)] == [third]


def test_transfers_to_someone_else_are_ignored(devnet, payer, treasury):
    other = str(Keypair().pubkey())
    signature = send_transfer(devnet.url, payer, other, SOL // 10, reference())
    devnet.devnet.advance(1)

    assert scan_transfers(devnet.url, treasury) == []
    assert check_signature(devnet.url, treasury, signature) == []


def test_a_pasted_signature_is_checked_at_once(devnet, payer, treasury):
    ref = reference()
    signature = send_transfer(devnet.url, payer, treasury, SOL // 4, ref)
    devnet.devnet.advance(1)

    [transfer] = check_signature(devnet.url, treasury, f"  {signature}\n")

    assert transfer.signature == signature
    assert transfer.memo == ref
    assert transfer.lamports == SOL // 4
    assert not transfer.finalized


def test_a_malformed_signature_is_refused_clearly(devnet, treasury):
    with pytest.raises(InvalidSignature):
        check_signature(devnet.url, treasury, "0xdeadbeef")


def test_an_unknown_signature_is_not_found(devnet, payer, treasury):
    signature = send_transfer(devnet.url, payer, treasury, SOL // 10, reference())
    with pytest.raises(SignatureNotFound):  # processed only: not yet confirmed
        check_signature(devnet.url, treasury, signature)

    stranger = Keypair().sign_message(b"never sent")
    with pytest.raises(SignatureNotFound):
        check_signature(devnet.url, treasury, str(stranger))


def test_a_failed_transaction_credits_nothing(devnet, treasury):
    poor = Keypair()
    request_airdrop(devnet.url, str(poor.pubkey()), SOL // 100)
    with pytest.raises(SolanaRpcError):  # the preflight refuses it
        send_transfer(devnet.url, poor, treasury, SOL, reference())
    assert scan_transfers(devnet.url, treasury) == []


def test_a_failed_transaction_that_landed_is_reported(devnet, treasury):
    poor = Keypair()
    request_airdrop(devnet.url, str(poor.pubkey()), SOL // 100)
    ledger = devnet.devnet
    blockhash = Hash.from_string(ledger.rpc_getLatestBlockhash([])["value"]["blockhash"])
    transaction = transfer_transaction(poor, treasury, SOL, reference(), blockhash)
    encoded = base64.b64encode(bytes(transaction)).decode()
    signature = ledger.call("sendTransaction", [encoded, {"encoding": "base64", "skipPreflight": True}])
    ledger.advance(1)

    assert scan_transfers(devnet.url, treasury) == []
    with pytest.raises(TransactionFailed):
        check_signature(devnet.url, treasury, signature)


def test_an_unreachable_rpc_is_a_solana_rpc_error(treasury):
    handle = start_devnet(slot_ms=0)
    url = handle.url
    handle.stop()
    with pytest.raises(SolanaRpcError):
        scan_transfers(url, treasury)


def test_parses_a_real_rpc_answer_shape():
    # The jsonParsed shape a mainnet RPC returns (abridged): a memo v1 instruction that the RPC
    # could parse, a transfer to the treasury, and one to someone else.
    treasury, payer, other = (str(Keypair().pubkey()) for _ in range(3))
    answer = {
        "slot": 250000000,
        "blockTime": 1700000000,
        "meta": {"err": None, "status": {"Ok": None}, "fee": 5000},
        "transaction": {
            "signatures": ["5" * 87],
            "message": {
                "instructions": [
                    {
                        "program": "spl-memo",
                        "programId": "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo",
                        "parsed": "0x" + "cd" * 32,
                        "stackHeight": None,
                    },
                    {
                        "program": "system",
                        "programId": "11111111111111111111111111111111",
                        "parsed": {"type": "transfer", "info": {"source": payer, "destination": other, "lamports": 7}},
                        "stackHeight": None,
                    },
                    {
                        "program": "system",
                        "programId": "11111111111111111111111111111111",
                        "parsed": {
                            "type": "transfer",
                            "info": {"source": payer, "destination": treasury, "lamports": 2500000000},
                        },
                        "stackHeight": None,
                    },
                ]
            },
        },
    }

    [transfer] = transfers_in_transaction(answer, treasury, finalized=True)

    assert transfer.instruction_index == 2
    assert transfer.memo == "0x" + "cd" * 32
    assert (transfer.payer, transfer.lamports, transfer.slot) == (payer, 2500000000, 250000000)
    answer["meta"]["err"] = {"InstructionError": [2, {"Custom": 1}]}
    assert transfers_in_transaction(answer, treasury, finalized=True) == []
