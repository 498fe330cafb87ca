"""Match commitments on LeaseRegistry (marketplace.deployments.commitments) on anvil: leases go out
in one recordMany batch through chain.sender, once; after the receipt the proof and the deployment
page say where, and spheron_sdk verifies the commitment against the chain; a lease the chain
already holds is recognised rather than blocking its batch."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from spheron_sdk.matching import verify_match

from chain.models import Chain, ChainTransaction, TxStatus
from chain.sender import transaction_record, transactions_run
from marketplace.deployments import commitments
from marketplace.deployments.commitments import commitments_publish, commitments_reconcile, record_many_calldata
from marketplace.models import Lease
from marketplace.tasks import publish_commitments
from tests.chain_fixtures import DEPLOYER, RECORDER_KEY_ENV
from tests.deployment_pages.conftest import bearer, create_and_match, owner  # noqa: F401 - fixture
from tests.deployments.conftest import market  # noqa: F401 - fixture

RECORDER = DEPLOYER  # holds RECORDER_ROLE


@pytest.fixture
def base(home_chain, settings, market):  # noqa: F811
    """Base on anvil with the contracts, its registry row, the recorder's key in the environment."""
    node = home_chain(commitments=True)
    settings.CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS = 120
    return node, Chain.objects.get(key="base")


def _settle(node) -> None:
    """The sender's beat pass, the block mined, the next pass reads the receipt, then ours."""
    transactions_run()
    for tx in ChainTransaction.objects.filter(purpose="commitments", status=TxStatus.SENT):
        node.w3.eth.wait_for_transaction_receipt(tx.tx_hash, timeout=10, poll_latency=0.05)
    transactions_run()
    commitments_reconcile()


def _on_chain(node, lease_id: int) -> str:
    registry = node.contract("LeaseRegistry")
    return "0x" + registry.functions.commitmentOf(lease_id.to_bytes(32, "big")).call().hex()


def test_two_leases_go_out_in_one_batch_once_and_the_proof_verifies_on_chain(base, owner):  # noqa: F811
    node, chain = base
    first_deployment, first = create_and_match(owner)
    _second_deployment, second = create_and_match(owner)
    matched_at = time.monotonic()

    published = commitments_publish()
    again = commitments_publish()  # a second run: nothing left to publish
    assert published.leases == 2 and again.leases == 0 and again.tx_id is None
    tx = ChainTransaction.objects.get(purpose="commitments")
    assert tx.reference == f"commitments:{first.id}-{second.id}" and tx.chain == chain
    assert set(Lease.objects.filter(commitment_tx=tx).values_list("id", flat=True)) == {first.id, second.id}

    _settle(node)
    assert publish_commitments.apply().get() == 0  # the beat task: nothing new, no second transaction
    recorded_after = time.monotonic() - matched_at
    assert ChainTransaction.objects.filter(purpose="commitments").count() == 1
    tx.refresh_from_db()
    assert tx.status == TxStatus.MINED
    for lease in (first, second):
        lease.refresh_from_db()
        assert lease.committed_at and lease.commitment_tx_hash == tx.tx_hash
        assert lease.commitment_block == tx.receipt_block
        assert _on_chain(node, lease.id) == "0x" + lease.order.match.commitment

    api = Client(**bearer(owner))
    proof = api.get(f"/api/v1/deployments/{first_deployment.id}/match-proof").json()
    assert proof["chain"] | {"rpc_url": None} == {
        "chain_id": 8453,
        "registry": node.contracts["LeaseRegistry"],
        "lease_id": first.id,
        "tx_hash": tx.tx_hash,
        "block": tx.receipt_block,
        "rpc_url": None,
    }
    checked = verify_match(proof, rpc_url=node.url)
    assert checked["ok"] and checked["on_chain"]["matches"]
    assert api.get(f"/api/v1/deployments/{first_deployment.id}").json()["match"]["chain"]["tx_hash"] == tx.tx_hash

    page = Client()
    page.force_login(owner)
    html = page.get(f"/deployments/{first_deployment.id}/").content.decode()
    assert tx.tx_hash in html and node.contracts["LeaseRegistry"] in html
    assert "0x" + first.id.to_bytes(32, "big").hex() in html
    print(f"\nmatch → on-chain record, sender and reconcile run back to back: {recorded_after * 1000:.0f} ms")


def test_before_the_record_the_proof_has_no_chain_and_the_page_says_it_is_pending(base, owner):  # noqa: F811
    deployment, _lease = create_and_match(owner)
    proof = Client(**bearer(owner)).get(f"/api/v1/deployments/{deployment.id}/match-proof").json()
    assert proof["chain"] is None and verify_match(proof)["ok"]
    page = Client()
    page.force_login(owner)
    html = page.get(f"/deployments/{deployment.id}/").content.decode()
    assert 'data-testid="commitment-chain-pending"' in html and 'data-testid="commitment-tx"' not in html


def test_a_lease_already_on_chain_is_recognised_and_the_rest_published_again(base, owner):  # noqa: F811
    node, _chain = base
    _deployment, first = create_and_match(owner)
    _deployment, second = create_and_match(owner)
    # The first lease's commitment is already on chain (say, a batch whose row was lost).
    registry = node.contract("LeaseRegistry")
    receipt = node.w3.eth.wait_for_transaction_receipt(
        registry.functions.record(first.id.to_bytes(32, "big"), bytes.fromhex(first.order.match.commitment)).transact(
            {"from": RECORDER.address}
        )
    )
    assert receipt.status == 1

    commitments_publish()
    transactions_run()  # the estimate reverts: AlreadyRecorded, all or nothing
    failed = ChainTransaction.objects.get(purpose="commitments")
    assert failed.status == TxStatus.FAILED and failed.revert_reason.startswith("AlreadyRecorded(")
    result = commitments_reconcile()
    assert (result.recognised, result.freed) == (1, 1)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.committed_at and not first.commitment_tx_hash
    assert second.commitment_tx is None and second.committed_at is None

    # The next run publishes the second lease alone (its range is new; a failed range gets a suffix).
    assert commitments_publish().leases == 1
    _settle(node)
    second.refresh_from_db()
    assert second.committed_at and second.commitment_tx.reference == f"commitments:{second.id}-{second.id}"
    assert _on_chain(node, second.id) == "0x" + second.order.match.commitment
    assert ChainTransaction.objects.filter(purpose="commitments").count() == 2


def test_a_failed_range_that_comes_back_gets_a_new_reference(base, owner):  # noqa: F811
    node, chain = base
    _deployment, lease = create_and_match(owner)
    reference = f"commitments:{lease.id}-{lease.id}"
    ChainTransaction.objects.create(
        chain=chain, purpose="commitments", reference=reference, key_env=RECORDER_KEY_ENV, sender=RECORDER.address,
        to=node.contracts["LeaseRegistry"], status=TxStatus.FAILED, revert_reason="out of gas",
    )  # fmt: skip
    commitments_publish()
    lease.refresh_from_db()
    assert lease.commitment_tx.reference == reference + ":2" and lease.commitment_tx.status == TxStatus.RECORDED


def test_a_batch_of_200_commitments_fits_one_transaction(base):
    """The figure: commitments per second for one recordMany of 200 (record, send, mine, receipt)."""
    node, chain = base
    pairs = [(10_000 + index, f"{index + 1:064x}") for index in range(200)]
    started = time.monotonic()
    tx = transaction_record(
        chain=chain,
        purpose="commitments",
        reference="commitments:bench",
        to=commitments.registry_address(),
        data=record_many_calldata(pairs),
        sender_key_env=RECORDER_KEY_ENV,
    )
    transactions_run()
    tx.refresh_from_db()
    node.w3.eth.wait_for_transaction_receipt(tx.tx_hash, timeout=30, poll_latency=0.05)
    transactions_run()
    elapsed = time.monotonic() - started
    tx.refresh_from_db()
    assert tx.status == TxStatus.MINED
    assert _on_chain(node, 10_199) == "0x" + f"{200:064x}"
    print(f"\n200 commitments in one batch: {elapsed * 1000:.0f} ms, {200 / elapsed:.0f}/s, gas {tx.gas_used}")


def test_without_the_recorder_key_the_publisher_waits_and_says_why(base, owner, monkeypatch):  # noqa: F811
    create_and_match(owner)
    monkeypatch.delenv(RECORDER_KEY_ENV)
    result = commitments_publish()
    assert result.leases == 0 and RECORDER_KEY_ENV in result.skipped
    assert not ChainTransaction.objects.exists() and Lease.objects.filter(commitment_tx__isnull=True).count() == 1


def test_a_backlog_drains_in_one_pass_in_full_batches_in_order(base, owner):  # noqa: F811
    """More leases than one batch holds: one beat pass records batches until one is short or the
    cap is reached, oldest leases first, each lease in exactly one batch; the sender then sends
    them in nonce order. (Batches of one here: the test market has room for three leases.)"""
    node, _chain = base
    leases = [create_and_match(owner)[1] for _ in range(3)]
    result = commitments.commitments_run(limit=1, max_batches=2)  # the cap stops after two batches
    assert result["batches"] == 2 and result["published"].leases == 2
    result = commitments.commitments_run(limit=1)
    assert result["batches"] == 1 and result["published"].leases == 1  # then an empty batch ends the pass
    batches = list(ChainTransaction.objects.filter(purpose="commitments").order_by("id"))
    assert [tx.reference for tx in batches] == [f"commitments:{lease.id}-{lease.id}" for lease in leases]
    _settle(node)
    nonces = [tx.nonce for tx in ChainTransaction.objects.filter(purpose="commitments").order_by("id")]
    assert nonces == list(range(nonces[0], nonces[0] + 3))  # the batches' order, no gap
    for lease in leases:
        lease.refresh_from_db()
        assert lease.committed_at and _on_chain(node, lease.id) == "0x" + lease.order.match.commitment
    assert commitments.commitments_run(limit=1)["batches"] == 0
