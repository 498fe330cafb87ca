"""LeaseRegistry on anvil (chain id 8453, Base): record once, batches, commitmentOf, the recorder
role and each revert."""

from __future__ import annotations

import pytest
from web3 import Web3

from chain.evm import artifacts
from chain.evm.anvil import DEV_ACCOUNTS
from tests.contracts.helpers import ZERO_ADDRESS, ZERO_REF, assert_reverts, call, error_data, events, transaction_of

ADMIN, TREASURY, OUTSIDER, NEW_RECORDER = DEV_ACCOUNTS[0], DEV_ACCOUNTS[1], DEV_ACCOUNTS[4], DEV_ACCOUNTS[5]
BASE = 8453
RECORDER_ROLE = Web3.keccak(text="RECORDER_ROLE")


def _id(text: str) -> bytes:
    return Web3.keccak(text=text)


LEASE, OTHER_LEASE, THIRD_LEASE = _id("lease:1"), _id("lease:2"), _id("lease:3")
COMMITMENT, OTHER_COMMITMENT, THIRD_COMMITMENT = _id("proof:1"), _id("proof:2"), _id("proof:3")
ZERO = bytes.fromhex(ZERO_REF[2:])


@pytest.fixture
def node(anvil):
    return anvil(chain_id=BASE, deploy=True)


@pytest.fixture
def registry(node):
    return node.contract("LeaseRegistry")


def _unauthorized(account) -> str:
    return error_data(
        "AccessControlUnauthorizedAccount(address,bytes32)", ("address", "bytes32"), (account.address, RECORDER_ROLE)
    )


def test_deployed_with_admin_and_recorder(registry):
    assert registry.functions.RECORDER_ROLE().call() == RECORDER_ROLE
    assert registry.functions.hasRole(registry.functions.DEFAULT_ADMIN_ROLE().call(), ADMIN.address).call() is True
    # deploy_all's operator defaults to the deployer.
    assert registry.functions.hasRole(RECORDER_ROLE, ADMIN.address).call() is True
    assert registry.functions.hasRole(RECORDER_ROLE, OUTSIDER.address).call() is False


def test_record_stores_the_commitment_and_emits_an_event(node, registry):
    assert registry.functions.commitmentOf(LEASE).call() == ZERO

    receipt = call(node.w3, ADMIN, registry.functions.record(LEASE, COMMITMENT))

    assert events(registry, "LeaseRecorded", receipt) == [
        {"leaseId": LEASE, "commitment": COMMITMENT, "recorder": ADMIN.address}
    ]
    assert registry.functions.commitmentOf(LEASE).call() == COMMITMENT
    assert registry.functions.commitmentOf(OTHER_LEASE).call() == ZERO
    # The lease id is an indexed topic: a verifier can filter one lease's record.
    [log] = receipt["logs"]
    assert bytes(log["topics"][1]) == LEASE


def test_a_lease_is_recorded_once(node, registry):
    call(node.w3, ADMIN, registry.functions.record(LEASE, COMMITMENT))

    already = error_data("AlreadyRecorded(bytes32)", ("bytes32",), (LEASE,))
    assert_reverts(node.w3, ADMIN, transaction_of(registry.functions.record(LEASE, OTHER_COMMITMENT)), already)
    assert_reverts(node.w3, ADMIN, transaction_of(registry.functions.record(LEASE, COMMITMENT)), already)
    assert registry.functions.commitmentOf(LEASE).call() == COMMITMENT


def test_zero_commitment_and_zero_lease_id_are_refused(node, registry):
    zero_commitment = error_data("ZeroCommitment(bytes32)", ("bytes32",), (LEASE,))
    assert_reverts(node.w3, ADMIN, transaction_of(registry.functions.record(LEASE, ZERO)), zero_commitment)
    assert_reverts(
        node.w3, ADMIN, transaction_of(registry.functions.record(ZERO, COMMITMENT)), error_data("ZeroLeaseId()")
    )
    assert registry.functions.commitmentOf(LEASE).call() == ZERO


def test_record_many_records_a_batch_with_an_event_each(node, registry):
    receipt = call(
        node.w3,
        ADMIN,
        registry.functions.recordMany(
            [LEASE, OTHER_LEASE, THIRD_LEASE], [COMMITMENT, OTHER_COMMITMENT, THIRD_COMMITMENT]
        ),
    )

    assert events(registry, "LeaseRecorded", receipt) == [
        {"leaseId": LEASE, "commitment": COMMITMENT, "recorder": ADMIN.address},
        {"leaseId": OTHER_LEASE, "commitment": OTHER_COMMITMENT, "recorder": ADMIN.address},
        {"leaseId": THIRD_LEASE, "commitment": THIRD_COMMITMENT, "recorder": ADMIN.address},
    ]
    assert registry.functions.commitmentOf(OTHER_LEASE).call() == OTHER_COMMITMENT
    assert registry.functions.commitmentOf(THIRD_LEASE).call() == THIRD_COMMITMENT


def test_record_many_refuses_mismatched_lengths_and_an_empty_batch(node, registry):
    mismatch = error_data("LengthMismatch(uint256,uint256)", ("uint256", "uint256"), (2, 1))
    batch = registry.functions.recordMany([LEASE, OTHER_LEASE], [COMMITMENT])
    assert_reverts(node.w3, ADMIN, transaction_of(batch), mismatch)
    assert_reverts(node.w3, ADMIN, transaction_of(registry.functions.recordMany([], [])), error_data("EmptyBatch()"))
    assert registry.functions.commitmentOf(LEASE).call() == ZERO


def test_record_many_with_a_recorded_lease_reverts_the_whole_batch(node, registry):
    call(node.w3, ADMIN, registry.functions.record(OTHER_LEASE, OTHER_COMMITMENT))
    already = error_data("AlreadyRecorded(bytes32)", ("bytes32",), (OTHER_LEASE,))

    batch = registry.functions.recordMany([LEASE, OTHER_LEASE, THIRD_LEASE], [COMMITMENT, COMMITMENT, THIRD_COMMITMENT])
    assert_reverts(node.w3, ADMIN, transaction_of(batch), already)

    # All or nothing: the leases before and after the duplicate stay unrecorded.
    assert registry.functions.commitmentOf(LEASE).call() == ZERO
    assert registry.functions.commitmentOf(THIRD_LEASE).call() == ZERO
    assert registry.functions.commitmentOf(OTHER_LEASE).call() == OTHER_COMMITMENT
    # The same lease twice in one batch is a duplicate too.
    twice = registry.functions.recordMany([LEASE, LEASE], [COMMITMENT, OTHER_COMMITMENT])
    assert_reverts(
        node.w3, ADMIN, transaction_of(twice), error_data("AlreadyRecorded(bytes32)", ("bytes32",), (LEASE,))
    )
    assert registry.functions.commitmentOf(LEASE).call() == ZERO


def test_only_the_recorder_records(node, registry):
    for who in (OUTSIDER, TREASURY):
        assert_reverts(node.w3, who, transaction_of(registry.functions.record(LEASE, COMMITMENT)), _unauthorized(who))
        batch = registry.functions.recordMany([LEASE], [COMMITMENT])
        assert_reverts(node.w3, who, transaction_of(batch), _unauthorized(who))
    assert registry.functions.commitmentOf(LEASE).call() == ZERO

    # Only the admin grants the role.
    admin_role = registry.functions.DEFAULT_ADMIN_ROLE().call()
    not_admin = error_data(
        "AccessControlUnauthorizedAccount(address,bytes32)", ("address", "bytes32"), (OUTSIDER.address, admin_role)
    )
    grant = registry.functions.grantRole(RECORDER_ROLE, OUTSIDER.address)
    assert_reverts(node.w3, OUTSIDER, transaction_of(grant), not_admin)

    call(node.w3, ADMIN, registry.functions.grantRole(RECORDER_ROLE, NEW_RECORDER.address))
    receipt = call(node.w3, NEW_RECORDER, registry.functions.record(LEASE, COMMITMENT))
    assert events(registry, "LeaseRecorded", receipt)[0]["recorder"] == NEW_RECORDER.address


def test_constructor_refuses_a_zero_admin(node):
    artifact = artifacts.load("LeaseRegistry")
    factory = node.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    deploy = {"data": factory.constructor(ZERO_ADDRESS).data_in_transaction, "value": 0}
    assert_reverts(node.w3, ADMIN, deploy, error_data("ZeroAddress()"))
