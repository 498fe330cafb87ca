"""RewardDistributor on anvil (chain id 8453, Base), deployed by deploy_all: the root-setter role,
claims proved with spheron_sdk.rewards_tree's proofs, cumulative amounts across eras (a later
claim pays only the difference), anyone submitting for an account, and each revert."""

from __future__ import annotations

import random

import pytest
from spheron_sdk import rewards_tree
from spheron_sdk.rewards_tree import RewardsTree
from web3 import Web3

from chain.evm.anvil import DEV_ACCOUNTS
from tests.contracts.helpers import assert_reverts, call, error_data, events, transaction_of

ADMIN, TREASURY, ALICE, BOB, CAROL, OUTSIDER = (DEV_ACCOUNTS[i] for i in (0, 1, 3, 4, 5, 6))
BASE = 8453
ROOT_SETTER_ROLE = Web3.keccak(text="ROOT_SETTER_ROLE")
SPON = 10**18
POOL = 1_000 * SPON  # what the treasury funds the distributor with


@pytest.fixture
def node(anvil):
    return anvil(chain_id=BASE, deploy=True)


@pytest.fixture
def distributor(node):
    return node.contract("RewardDistributor")


@pytest.fixture
def token(node):
    return node.contract("SponToken")


@pytest.fixture
def funded(node, distributor, token):
    call(node.w3, TREASURY, token.functions.transfer(distributor.address, POOL))
    return distributor


def _set_root(node, distributor, tree: RewardsTree, era: int):
    return call(node.w3, ADMIN, distributor.functions.setRoot(tree.root, era))


def _claim(node, distributor, tree: RewardsTree, account, *, sender=None):
    """Sends `account`'s claim (a dev account, or an address with `sender` submitting for it)."""
    address = getattr(account, "address", account)
    function = distributor.functions.claim(address, tree.amount(address), tree.proof(address))
    return call(node.w3, sender or account, function)


def _balance(token, account) -> int:
    return token.functions.balanceOf(account).call()


def _invalid(account: str, amount: int) -> str:
    return error_data("InvalidProof(address,uint256)", ("address", "uint256"), (account, amount))


def _nothing(account: str, amount: int, already: int) -> str:
    return error_data(
        "NothingToClaim(address,uint256,uint256)", ("address", "uint256", "uint256"), (account, amount, already)
    )


def test_deployed_with_its_token_admin_and_root_setter(node, distributor):
    assert distributor.functions.spon().call() == node.contracts["SponToken"]
    assert distributor.functions.ROOT_SETTER_ROLE().call() == ROOT_SETTER_ROLE
    assert distributor.functions.hasRole(distributor.functions.DEFAULT_ADMIN_ROLE().call(), ADMIN.address).call()
    # deploy_all's operator defaults to the deployer.
    assert distributor.functions.hasRole(ROOT_SETTER_ROLE, ADMIN.address).call() is True
    assert distributor.functions.hasRole(ROOT_SETTER_ROLE, OUTSIDER.address).call() is False
    assert distributor.functions.merkleRoot().call() == bytes(32)
    assert distributor.functions.era().call() == 0


def test_only_the_root_setter_sets_the_root_and_a_new_root_replaces_the_old(node, distributor):
    first = RewardsTree.build({ALICE.address: 5 * SPON})
    unauthorized = error_data(
        "AccessControlUnauthorizedAccount(address,bytes32)",
        ("address", "bytes32"),
        (OUTSIDER.address, ROOT_SETTER_ROLE),
    )
    assert_reverts(node.w3, OUTSIDER, transaction_of(distributor.functions.setRoot(first.root, 1)), unauthorized)
    assert distributor.functions.merkleRoot().call() == bytes(32)

    receipt = _set_root(node, distributor, first, era=1)

    assert events(distributor, "RootSet", receipt) == [{"root": Web3.to_bytes(hexstr=first.root), "era": 1}]
    assert "0x" + distributor.functions.merkleRoot().call().hex() == first.root
    second = RewardsTree.build({ALICE.address: 8 * SPON, BOB.address: 2 * SPON})
    _set_root(node, distributor, second, era=2)
    assert "0x" + distributor.functions.merkleRoot().call().hex() == second.root
    assert distributor.functions.era().call() == 2
    # A root setter the admin adds can set roots too.
    call(node.w3, ADMIN, distributor.functions.grantRole(ROOT_SETTER_ROLE, OUTSIDER.address))
    call(node.w3, OUTSIDER, distributor.functions.setRoot(first.root, 3))
    assert "0x" + distributor.functions.merkleRoot().call().hex() == first.root


def test_a_zero_root_and_an_earlier_era_are_refused_the_same_era_may_be_corrected(node, distributor):
    tree = RewardsTree.build({ALICE.address: 5 * SPON})
    corrected = RewardsTree.build({ALICE.address: 6 * SPON})
    _set_root(node, distributor, tree, era=7)

    assert_reverts(
        node.w3, ADMIN, transaction_of(distributor.functions.setRoot(bytes(32), 8)), error_data("ZeroRoot()")
    )
    earlier = error_data("EraBeforeCurrent(uint256,uint256)", ("uint256", "uint256"), (7, 6))
    assert_reverts(node.w3, ADMIN, transaction_of(distributor.functions.setRoot(corrected.root, 6)), earlier)
    _set_root(node, distributor, corrected, era=7)
    assert "0x" + distributor.functions.merkleRoot().call().hex() == corrected.root


def test_a_claim_with_its_proof_pays_the_account(node, funded, token):
    tree = RewardsTree.build({ALICE.address: 5 * SPON, BOB.address: 7 * SPON, CAROL.address: 11 * SPON})
    _set_root(node, funded, tree, era=1)
    before = _balance(token, ALICE.address)

    receipt = _claim(node, funded, tree, ALICE)

    assert events(funded, "Claimed", receipt) == [
        {"account": ALICE.address, "amount": 5 * SPON, "cumulativeAmount": 5 * SPON}
    ]
    assert _balance(token, ALICE.address) == before + 5 * SPON
    assert _balance(token, funded.address) == POOL - 5 * SPON
    assert funded.functions.claimed(ALICE.address).call() == 5 * SPON
    assert funded.functions.claimed(BOB.address).call() == 0


def test_anyone_can_submit_the_claim_of_an_account_and_the_tokens_go_to_the_account(node, funded, token):
    tree = RewardsTree.build({ALICE.address: 5 * SPON, BOB.address: 7 * SPON})
    _set_root(node, funded, tree, era=1)
    outsider_before, bob_before = _balance(token, OUTSIDER.address), _balance(token, BOB.address)

    receipt = _claim(node, funded, tree, BOB.address, sender=OUTSIDER)

    assert events(funded, "Claimed", receipt)[0]["account"] == BOB.address
    assert _balance(token, BOB.address) == bob_before + 7 * SPON
    assert _balance(token, OUTSIDER.address) == outsider_before
    assert funded.functions.claimed(BOB.address).call() == 7 * SPON


def test_a_wrong_amount_or_proof_reverts(node, funded, token):
    tree = RewardsTree.build({ALICE.address: 5 * SPON, BOB.address: 7 * SPON, CAROL.address: 11 * SPON})
    claim = funded.functions.claim
    # Before any root, nothing proves.
    before_root = transaction_of(claim(ALICE.address, 5 * SPON, tree.proof(ALICE.address)))
    assert_reverts(node.w3, ALICE, before_root, _invalid(ALICE.address, 5 * SPON))
    _set_root(node, funded, tree, era=1)

    cases = [
        (ALICE.address, 6 * SPON, tree.proof(ALICE.address)),  # more than the tree says
        (ALICE.address, 4 * SPON, tree.proof(ALICE.address)),  # less: still not the leaf
        (ALICE.address, 5 * SPON, tree.proof(BOB.address)),  # another account's proof
        (ALICE.address, 5 * SPON, []),  # no proof
        (BOB.address, 5 * SPON, tree.proof(ALICE.address)),  # Alice's leaf claimed for Bob
        (OUTSIDER.address, 5 * SPON, tree.proof(ALICE.address)),  # not in the tree at all
    ]
    for account, amount, proof in cases:
        assert_reverts(node.w3, ALICE, transaction_of(claim(account, amount, proof)), _invalid(account, amount))
    tampered = tree.proof(CAROL.address)
    tampered[-1] = "0x" + "00" * 32
    assert_reverts(
        node.w3, CAROL, transaction_of(claim(CAROL.address, 11 * SPON, tampered)), _invalid(CAROL.address, 11 * SPON)
    )
    assert _balance(token, funded.address) == POOL
    assert funded.functions.claimed(ALICE.address).call() == 0


def test_claiming_twice_with_the_same_root_reverts_as_nothing_due(node, funded, token):
    tree = RewardsTree.build({ALICE.address: 5 * SPON, BOB.address: 7 * SPON})
    _set_root(node, funded, tree, era=1)
    _claim(node, funded, tree, ALICE)
    after_first = _balance(token, ALICE.address)

    again = transaction_of(funded.functions.claim(ALICE.address, 5 * SPON, tree.proof(ALICE.address)))
    assert_reverts(node.w3, OUTSIDER, again, _nothing(ALICE.address, 5 * SPON, 5 * SPON))
    assert _balance(token, ALICE.address) == after_first
    # A leaf of zero is in the tree but owes nothing.
    zero = RewardsTree.build({ALICE.address: 5 * SPON, CAROL.address: 0})
    _set_root(node, funded, zero, era=2)
    nothing_due = transaction_of(funded.functions.claim(CAROL.address, 0, zero.proof(CAROL.address)))
    assert_reverts(node.w3, CAROL, nothing_due, _nothing(CAROL.address, 0, 0))


def test_a_later_eras_root_pays_only_the_difference(node, funded, token):
    era_1 = RewardsTree.build({ALICE.address: 5 * SPON, BOB.address: 7 * SPON})
    _set_root(node, funded, era_1, era=1)
    _claim(node, funded, era_1, ALICE)
    alice_before, bob_before = _balance(token, ALICE.address), _balance(token, BOB.address)
    # Era 2 adds to every cumulative amount; Bob never claimed era 1, Carol is new.
    era_2 = RewardsTree.build({ALICE.address: 12 * SPON, BOB.address: 10 * SPON, CAROL.address: 3 * SPON})
    _set_root(node, funded, era_2, era=2)

    # Era 1's leaf is no longer in the tree.
    stale = transaction_of(funded.functions.claim(BOB.address, 7 * SPON, era_1.proof(BOB.address)))
    assert_reverts(node.w3, BOB, stale, _invalid(BOB.address, 7 * SPON))
    alice_receipt = _claim(node, funded, era_2, ALICE)
    bob_receipt = _claim(node, funded, era_2, BOB)

    assert events(funded, "Claimed", alice_receipt) == [
        {"account": ALICE.address, "amount": 7 * SPON, "cumulativeAmount": 12 * SPON}
    ]
    assert _balance(token, ALICE.address) == alice_before + 7 * SPON  # 12 − the 5 claimed in era 1
    assert _balance(token, BOB.address) == bob_before + 10 * SPON  # both eras in one claim
    assert events(funded, "Claimed", bob_receipt)[0]["amount"] == 10 * SPON
    assert funded.functions.claimed(ALICE.address).call() == 12 * SPON
    assert _balance(token, funded.address) == POOL - 22 * SPON
    again = transaction_of(funded.functions.claim(ALICE.address, 12 * SPON, era_2.proof(ALICE.address)))
    assert_reverts(node.w3, ALICE, again, _nothing(ALICE.address, 12 * SPON, 12 * SPON))


def test_a_distributor_short_of_spon_reverts_and_records_nothing(node, distributor, token):
    call(node.w3, TREASURY, token.functions.transfer(distributor.address, 3 * SPON))
    tree = RewardsTree.build({ALICE.address: 5 * SPON})
    _set_root(node, distributor, tree, era=1)

    short = error_data(
        "ERC20InsufficientBalance(address,uint256,uint256)",
        ("address", "uint256", "uint256"),
        (distributor.address, 3 * SPON, 5 * SPON),
    )
    claim = distributor.functions.claim(ALICE.address, 5 * SPON, tree.proof(ALICE.address))
    assert_reverts(node.w3, ALICE, transaction_of(claim), short)
    assert distributor.functions.claimed(ALICE.address).call() == 0
    # Funded, the same claim goes through.
    call(node.w3, TREASURY, token.functions.transfer(distributor.address, 2 * SPON))
    call(node.w3, ALICE, claim)
    assert _balance(token, distributor.address) == 0


def test_the_contract_accepts_every_proof_of_a_python_tree(node, funded, token):
    """A tree of 37 accounts (proofs of 5 and 6 hashes): every leaf proves on chain, and a claim
    sent for the first, the last and a middle one pays exactly its amount."""
    draw = random.Random(22)
    amounts = {
        rewards_tree.checksum_address("0x" + draw.randbytes(20).hex()): draw.randrange(1, 10 * SPON) for _ in range(36)
    }
    amounts[ALICE.address] = 9 * SPON
    tree = RewardsTree.build(amounts)
    _set_root(node, funded, tree, era=4)

    for account, amount in amounts.items():
        proof = tree.proof(account)
        # eth_call runs the claim without sending it: it returns (no revert) for every leaf.
        funded.functions.claim(account, amount, proof).call({"from": OUTSIDER.address})
    for account in (list(amounts)[0], list(amounts)[18], ALICE.address):
        before = _balance(token, account)
        receipt = _claim(node, funded, tree, account, sender=OUTSIDER)
        assert _balance(token, account) == before + amounts[account]
        assert events(funded, "Claimed", receipt)[0]["cumulativeAmount"] == amounts[account]
    assert {len(tree.proof(account)) for account in amounts} == {5, 6}
