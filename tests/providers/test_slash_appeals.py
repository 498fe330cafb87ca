"""Appeals of slashes (issue 22, parts 4 and 7): the provider appeals an applied slash once from the
stake page, an admin upholds or dismisses it with an answer; upholding returns what was slashed: on
chain a $SPON transfer from the treasury to the stake address (sent once, through chain.sender), off
chain a stake event. The stake page links each slash's evidence and shows the appeal, the answer and
the refund."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client

from billing.models import UsageMeter
from chain.models import ChainTransaction, TxStatus
from chain.sender import transactions_run
from core import clock
from core.errors import ApplicationError
from providers.models import AppealStatus, NodeChallenge, RefundStatus, SlashAppeal, StakeEvent
from providers.services import stake_record
from providers.slashing import appeal_decide, slash_decide, slashes_run
from tests.factories import make_node, make_provider, make_user
from tests.providers.test_slashing import (  # noqa: F401 - fixtures
    EXPLORER,
    STAKER,
    TREASURY,
    _settle,
    home,
    staked,
)

SPON = 10**18
REFUND_KEY_ENV = "CHAIN_TEST_TREASURY_KEY"


@pytest.fixture
def admin_client(db):
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def off_chain(db, settings):
    """A provider with 500 $SPON recorded by an admin (no stake address) and a 100 $SPON slash."""
    settings.STAKING_CONTRACT_ADDRESS = ""
    provider = make_provider()
    stake_record(provider=provider, kind="stake", amount="500", reason="agreement")
    slash = slash_decide(provider=provider, amount_spon="100", reason="Fake GPUs", reference="test:off")
    assert slash.status == "off_chain"
    return provider, slash


def _appeal(client, slash, text="The node was up: see my logs."):
    return client.post(f"/provider/stake/slashes/{slash.id}/appeal/", {"text": text})


def _decide(admin_client, appeal, action: str, answer: str = "Checked the logs."):
    return admin_client.post(
        "/admin/providers/slashappeal/",
        {"action": action, "_selected_action": [appeal.id], "apply": "1", "answer": answer},
    )


# --- The provider's appeal -----------------------------------------------------------------------


def test_the_appeal_form_checks_its_input(off_chain, client):
    provider, slash = off_chain
    client.force_login(provider.user)
    page = client.get("/provider/stake/").content.decode()
    assert 'data-testid="appeal-form"' in page and f"/provider/stake/slashes/{slash.id}/appeal/" in page

    empty = _appeal(client, slash, "   ")
    assert empty.status_code == 400 and "Write your appeal." in empty.content.decode()
    long = _appeal(client, slash, "x" * 2001)
    assert long.status_code == 400 and "The appeal has at most 2,000 characters." in long.content.decode()
    assert "x" * 2001 in long.content.decode()  # the text is kept for correcting
    nul = _appeal(client, slash, "bad\x00byte")
    assert nul.status_code == 400 and "cannot contain control characters" in nul.content.decode()
    assert not SlashAppeal.objects.exists()

    response = _appeal(client, slash, "x" * 2000)
    assert response.status_code == 302 and response["Location"] == "/provider/stake/#slashes"
    appeal = SlashAppeal.objects.get()
    assert (appeal.slash_id, appeal.status, len(appeal.text)) == (slash.id, AppealStatus.OPEN, 2000)

    twice = _appeal(client, slash, "again")
    assert twice.status_code == 409 and "You have already appealed this slash." in twice.content.decode()
    assert SlashAppeal.objects.count() == 1


def test_only_ones_own_applied_slash_can_be_appealed(off_chain, client):
    provider, slash = off_chain
    outsider = make_provider()
    client.force_login(outsider.user)
    assert _appeal(client, slash).status_code == 404
    assert client.get(f"/provider/stake/slashes/{slash.id}/").status_code == 404
    assert not SlashAppeal.objects.exists()

    failed = slash_decide(provider=outsider, amount_spon="1", reason="x", reference="test:nothing-staked")
    assert failed.status == "failed"
    response = _appeal(client, failed)
    assert response.status_code == 409 and "Only a slash that was applied can be appealed." in response.content.decode()


# --- Off chain: the stake comes back as a stake event --------------------------------------------


def test_upholding_an_off_chain_slash_restores_the_stake_once(off_chain, client, admin_client):
    provider, slash = off_chain
    client.force_login(provider.user)
    _appeal(client, slash)
    appeal = SlashAppeal.objects.get()

    listing = admin_client.get("/admin/providers/slashappeal/").content.decode()
    assert "The node was up: see my logs." in listing and f"#{slash.id} test:off" in listing
    detail = admin_client.get(f"/admin/providers/slashappeal/{appeal.id}/change/")
    assert detail.status_code == 200 and "The node was up: see my logs." in detail.content.decode()
    assert "Fake GPUs" in detail.content.decode()  # the slash's reason beside it
    slashes = admin_client.get("/admin/providers/slash/").content.decode()
    assert f'href="/admin/providers/slashappeal/{appeal.id}/change/">Open (an admin decides)</a>' in slashes
    # The action asks for the answer first.
    ask = admin_client.post("/admin/providers/slashappeal/", {"action": "uphold", "_selected_action": [appeal.id]})
    assert ask.status_code == 200 and 'name="answer"' in ask.content.decode()

    assert _decide(admin_client, appeal, "uphold", "Our monitor was wrong.").status_code == 302
    appeal.refresh_from_db()
    assert (appeal.status, appeal.refund_status, int(appeal.refund_amount)) == ("upheld", "restored", 100 * SPON)
    assert appeal.decided_by.is_superuser and appeal.answer == "Our monitor was wrong."
    event = appeal.refund_stake_event
    assert (event.kind, int(event.amount), event.reason) == ("stake", 100 * SPON, f"appeal upheld (slash #{slash.id})")
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 500 * SPON

    # Again (the admin's double click, a retry): refused, nothing more returned.
    again = _decide(admin_client, appeal, "uphold")
    assert again.status_code == 302
    with pytest.raises(ApplicationError, match="already upheld"):
        appeal_decide(appeal_id=appeal.id, uphold=True, answer="x", by=None)
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 500 * SPON
    assert StakeEvent.objects.filter(kind="stake").count() == 2

    page = client.get("/provider/stake/").content.decode()
    assert 'data-testid="appeal-status" data-status="upheld"' in page
    assert "Our monitor was wrong." in page
    assert 'data-refund="restored"' in page and "Refund of 100 $SPON: Restored to the admin-recorded stake." in page


def test_dismissing_needs_an_answer_and_returns_nothing(off_chain, client, admin_client):
    provider, slash = off_chain
    client.force_login(provider.user)
    _appeal(client, slash)
    appeal = SlashAppeal.objects.get()

    blank = _decide(admin_client, appeal, "dismiss", answer="  ")
    assert blank.status_code == 200 and "This field is required." in blank.content.decode()
    appeal.refresh_from_db()
    assert appeal.status == AppealStatus.OPEN

    assert _decide(admin_client, appeal, "dismiss", answer="The logs show 20 minutes of silence.").status_code == 302
    appeal.refresh_from_db()
    assert (appeal.status, appeal.refund_status, appeal.refund_amount) == ("dismissed", "", None)
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 400 * SPON
    page = client.get("/provider/stake/").content.decode()
    assert 'data-status="dismissed"' in page and "The logs show 20 minutes of silence." in page
    assert 'data-testid="appeal-form"' not in page  # not twice


# --- On chain: a $SPON transfer from the treasury to the stake address ---------------------------


def _balance(node) -> int:
    return node.contract("SponToken").functions.balanceOf(STAKER.address).call()


def _send_refunds(node) -> None:
    slashes_run()
    transactions_run()
    for tx in ChainTransaction.objects.filter(purpose="slash-refund", status=TxStatus.SENT):
        node.w3.eth.wait_for_transaction_receipt(tx.tx_hash, timeout=10, poll_latency=0.05)
    transactions_run()
    slashes_run()


def test_upholding_an_on_chain_slash_sends_the_refund_once(home, staked, client, admin_client, settings, monkeypatch):  # noqa: F811
    node, _chain = home
    provider, _machine = staked
    settings.SLASH_REFUND_KEY_ENV = REFUND_KEY_ENV
    slash = slash_decide(provider=provider, amount_spon="150", reason="Lease 42 down", reference="test:on")
    _settle(node)
    slash.refresh_from_db()
    assert slash.status == "applied" and int(slash.amount_slashed) == 150 * SPON
    before = _balance(node)

    client.force_login(provider.user)
    assert _appeal(client, slash).status_code == 302
    appeal = SlashAppeal.objects.get()

    # No treasury key yet: upheld, and the refund waits, saying why.
    monkeypatch.delenv(REFUND_KEY_ENV, raising=False)
    assert _decide(admin_client, appeal, "uphold", "Sorry: our mistake.").status_code == 302
    appeal.refresh_from_db()
    assert (appeal.status, appeal.refund_status, appeal.refund_tx_id) == ("upheld", RefundStatus.WAITING, None)
    assert appeal.refund_note == f"The refund waits: {REFUND_KEY_ENV} is not set."
    assert slashes_run().refunds_waiting == f"{REFUND_KEY_ENV} is not set"
    page = client.get("/provider/stake/").content.decode()
    assert 'data-refund="waiting"' in page and f"The refund waits: {REFUND_KEY_ENV} is not set." in page

    monkeypatch.setenv(REFUND_KEY_ENV, TREASURY.private_key)
    _send_refunds(node)
    _send_refunds(node)  # every pass again: nothing more is sent
    appeal.refresh_from_db()
    tx = appeal.refund_tx
    assert (tx.purpose, tx.reference, tx.sender, tx.status) == (
        "slash-refund",
        f"slash-refund:{slash.id}",
        TREASURY.address,
        TxStatus.MINED,
    )
    assert appeal.refund_status == RefundStatus.RETURNED and int(appeal.refund_amount) == 150 * SPON
    assert ChainTransaction.objects.filter(purpose="slash-refund").count() == 1
    assert _balance(node) == before + 150 * SPON
    # Back in the wallet, not in SponStaking: the counted stake stays what the slash left.
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 250 * SPON

    page = client.get("/provider/stake/").content.decode()
    assert 'data-refund="returned"' in page and "Refund of 150 $SPON: Returned to the stake address." in page
    assert f'href="{EXPLORER.replace("{tx}", tx.tx_hash)}"' in page
    assert "stake it again" in page and "Sorry: our mistake." in page


# --- Evidence ------------------------------------------------------------------------------------


def test_the_stake_page_links_a_lease_slash_to_its_evidence(off_chain, client):
    provider, _slash = off_chain
    node = make_node(provider=provider, is_simulated=False)
    renter = make_user()
    last_good = clock.now() - timedelta(minutes=5)
    meter = UsageMeter.objects.create(
        hold_id=_hold(renter).id,
        renter=renter,
        payee=provider.user,
        reference_type="lease",
        reference_id="77",
        price_per_hour=180_000,
        fee_rate=Decimal("0.05"),
        started_at=last_good - timedelta(hours=1),
        closed_at=last_good,
        charged=180_000,
    )
    slash = slash_decide(
        provider=provider,
        amount_spon="1",
        reason="Lease 77 down",
        reference="lease-downtime:77",
        evidence_type="lease",
        evidence_id="77",
        node=node,
    )
    client.force_login(provider.user)
    page = client.get("/provider/stake/").content.decode()
    assert f'<a href="/provider/stake/slashes/{slash.id}/">lease 77</a>' in page
    evidence = client.get(f"/provider/stake/slashes/{slash.id}/").content.decode()
    assert 'data-testid="slash-evidence-lease"' in evidence and f"/provider/nodes/{node.id}/" in evidence
    assert f"{meter.closed_at:%Y-%m-%d %H:%M:%S}: the node's last heartbeat" in evidence
    assert "$0.18 an hour" in evidence


def test_a_liveness_slash_links_the_eras_failed_challenges(off_chain, client):
    provider, _slash = off_chain
    node = make_node(provider=provider, is_simulated=False)
    start = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    for n in range(3):
        NodeChallenge.objects.create(
            public_id=f"ch{n}",
            node=node,
            nonce="n",
            issued_at=start + timedelta(hours=n + 1),
            expires_at=start + timedelta(hours=n + 1, minutes=2),
            status="failed",
            answered_at=start + timedelta(hours=n + 1, seconds=1),
            failure_reason=f"registered 16 CPU cores, found {n}",
        )
    slash = slash_decide(
        provider=provider,
        amount_spon="50",
        reason="3 failed challenges",
        reference=f"liveness:{node.id}:x",
        evidence_type="challenge",
        evidence_id="ch2",
        node=node,
    )
    client.force_login(provider.user)
    evidence = client.get(f"/provider/stake/slashes/{slash.id}/").content.decode()
    assert evidence.count('data-testid="slash-evidence-challenge"') == 3
    assert "registered 16 CPU cores, found 0" in evidence and "registered 16 CPU cores, found 2" in evidence


def _hold(user):
    from billing.services import hold_place
    from tests.deployments.conftest import fund

    fund(user, 10)
    return hold_place(user=user, amount=1_000_000, reference_type="test", reference_id=f"h{user.id}")
