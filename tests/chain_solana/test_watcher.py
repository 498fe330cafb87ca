"""SOL deposits end to end through the JSON-RPC path: the LiteSVM devnet over HTTP, the Solana
watcher (chain.solana.watcher) storing and deciding them with the EVM watcher's code
(chain.ingest), billing crediting the final ones once. A transfer without a memo, or with an
unknown one, waits in the unmatched queue; a pasted signature is checked at once."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair

from billing.selectors import ledger_total, user_balances
from chain import services
from chain.models import Chain, Deposit, DepositStatus
from chain.registry import ChainAddresses, registry_sync
from chain.solana.devnet import start_devnet
from chain.solana.scan import request_airdrop, send_transfer
from core.errors import ApplicationError
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)

SOL = 10**9
FINALITY_SLOTS = 4


@pytest.fixture
def devnet():
    handle = start_devnet(slot_ms=0, finality_slots=FINALITY_SLOTS)  # slots pass with advance()
    yield handle
    handle.stop()


@pytest.fixture
def solana(devnet, settings):
    treasury = str(Keypair().pubkey())
    request_airdrop(devnet.url, treasury, SOL)  # the rent-exempt minimum must be there first
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "solana": devnet.url}
    registry_sync(devnet=True, keys=("solana",), addresses={"solana": ChainAddresses(treasury=treasury)})
    chain = Chain.objects.get(key="solana")
    Chain.objects.filter(id=chain.id).update(rpc_url=devnet.url, finality=2, enabled=True)
    return Chain.objects.get(id=chain.id)


@pytest.fixture
def payer(devnet):
    keypair = Keypair()
    request_airdrop(devnet.url, str(keypair.pubkey()), 10 * SOL)
    return keypair


def test_a_sol_deposit_with_the_reference_is_credited_once_after_finality(devnet, solana, payer):
    user = make_user(email="sol@example.test")
    ref = services.reference_for(user).ref
    signature = send_transfer(devnet.url, payer, solana.treasury_address, SOL // 2, ref.upper().replace("0X", "0x"))
    devnet.devnet.advance(1)  # confirmed

    services.chain_watch(chain_key="solana")
    deposit = Deposit.objects.get(tx_hash=signature)
    assert deposit.user_id == user.id and deposit.amount == SOL // 2 and deposit.status in ("seen", "confirming")
    assert user_balances(user=user).available == 0

    devnet.devnet.advance(FINALITY_SLOTS + 2)  # rooted
    services.chain_watch(chain_key="solana")
    services.chain_watch(chain_key="solana")  # again: nothing more
    deposit.refresh_from_db()
    assert deposit.status == DepositStatus.CREDITED
    assert deposit.usd_micros > 0 and deposit.fee_micros == deposit.usd_micros * 2 // 100
    assert user_balances(user=user).available == deposit.usd_micros - deposit.fee_micros
    assert Deposit.objects.filter(tx_hash=signature).count() == 1
    assert ledger_total() == 0


def test_a_transfer_without_a_memo_or_with_an_unknown_one_waits_in_the_unmatched_queue(devnet, solana, payer):
    bare = send_transfer(devnet.url, payer, solana.treasury_address, SOL // 4)
    unknown = send_transfer(devnet.url, payer, solana.treasury_address, SOL // 5, "0x" + "ab" * 32)
    devnet.devnet.advance(FINALITY_SLOTS + 2)
    services.chain_watch(chain_key="solana")
    statuses = dict(Deposit.objects.filter(tx_hash__in=[bare, unknown]).values_list("tx_hash", "status"))
    assert statuses == {bare: DepositStatus.UNMATCHED, unknown: DepositStatus.UNMATCHED}
    # (The airdrop that funded the treasury is a SOL transfer without a memo too: unmatched as well.)
    assert Deposit.objects.get(tx_hash=bare).account_ref == ""


def test_a_pasted_signature_is_checked_at_once_and_bad_ones_get_clear_errors(devnet, solana, payer):
    user = make_user(email="paste@example.test")
    ref = services.reference_for(user).ref
    signature = send_transfer(devnet.url, payer, solana.treasury_address, SOL // 10, ref)
    devnet.devnet.advance(FINALITY_SLOTS + 2)

    deposits = services.deposit_check(chain_key="solana", tx_hash=f"  {signature} ")
    assert [d.status for d in deposits] == [DepositStatus.FINAL] or [d.status for d in deposits] == [
        DepositStatus.CREDITED
    ]
    Deposit.objects.get(tx_hash=signature).refresh_from_db()
    assert Deposit.objects.get(tx_hash=signature).status == DepositStatus.CREDITED

    with pytest.raises(ApplicationError) as bad:
        services.deposit_check(chain_key="solana", tx_hash="not-a-signature")
    assert bad.value.status == 422
    elsewhere = send_transfer(devnet.url, payer, str(Keypair().pubkey()), SOL // 10, ref)
    devnet.devnet.advance(1)
    with pytest.raises(ApplicationError) as not_ours:
        services.deposit_check(chain_key="solana", tx_hash=elsewhere)
    assert not_ours.value.status == 422 and "treasury" in not_ours.value.message
    unknown = str(Keypair().sign_message(b"never sent"))
    with pytest.raises(ApplicationError) as missing:
        services.deposit_check(chain_key="solana", tx_hash=unknown)
    assert missing.value.status == 404


def test_an_unreachable_rpc_is_a_503_for_a_pasted_signature_and_a_skipped_run_for_the_task(solana, settings):
    Chain.objects.filter(id=solana.id).update(rpc_url="http://127.0.0.1:9")
    from chain.tasks import watch_chain

    assert watch_chain("solana") == 0
    signature = str(Keypair().sign_message(b"x"))
    with pytest.raises(ApplicationError) as down:
        services.deposit_check(chain_key="solana", tx_hash=signature)
    assert down.value.status == 503
