"""Two watcher processes on one chain at the same moment: every deposit is stored once, decided
once and credited once.

Needs PostgreSQL: the two processes share the test database (SQLite's test database lives in the
test process's memory) and race on its row locks. Without DATABASE_URL the test skips; under
CI=true it fails instead, as tests/billing/test_concurrency.py does."""

from __future__ import annotations

import multiprocessing

import pytest
from django.db import connections

from billing.models import LedgerTransaction
from billing.selectors import user_balances
from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import Deposit, DepositStatus
from chain.services import chain_watch, reference_for
from tests.needs import requires_postgresql

DEPOSITS = 20
WATCHERS = 2

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    requires_postgresql("a test database the two watcher processes share (SQLite's lives in this process)"),
]


def _watch(barrier, results) -> None:  # runs in a forked child: its own database connection
    connections.close_all()
    try:
        barrier.wait(timeout=30)
        for _ in range(3):
            chain_watch(chain_key="base")
        results.put("ok")
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(repr(exc))
    finally:
        connections.close_all()


def test_two_watcher_processes_credit_each_deposit_once(devnet_chain, renter):
    node = devnet_chain()
    receiver = node.contract("PaymentReceiver")
    ref = bytes.fromhex(reference_for(renter).ref[2:])
    payer = DEV_ACCOUNTS[2].address
    hashes = [receiver.functions.deposit(ref).transact({"from": payer, "value": 10**16}) for _ in range(DEPOSITS)]
    for tx in hashes:
        node.w3.eth.wait_for_transaction_receipt(tx)
    for _ in range(3):
        node.rpc("evm_mine")

    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(WATCHERS), context.Queue()
    connections.close_all()  # never share a connection across fork
    children = [context.Process(target=_watch, args=(barrier, results)) for _ in range(WATCHERS)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    outcomes = [results.get(timeout=5) for _ in children]
    assert outcomes == ["ok"] * WATCHERS

    assert Deposit.objects.count() == DEPOSITS
    assert set(Deposit.objects.values_list("status", flat=True)) == {DepositStatus.CREDITED}
    assert LedgerTransaction.objects.filter(idempotency_key__startswith="deposit:base:").count() == DEPOSITS
    assert user_balances(user=renter).available == DEPOSITS * (30_000_000 - 600_000)
