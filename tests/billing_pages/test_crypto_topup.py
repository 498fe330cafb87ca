"""The crypto half of /billing/topup/: chains, rates and fees, the amount calculator (exact, rounded
up), QR codes and wallet calldata, the "check a transaction" form, the deposits list."""

from __future__ import annotations

import html as html_lib
import re
import socket
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from billing import deposit_pages
from chain.models import Chain, ChainToken, Deposit, DepositStatus, Rate
from chain.registry import ChainAddresses, registry_sync
from chain.services import reference_for
from tests.billing_pages.conftest import USD

pytestmark = pytest.mark.django_db
RECEIVER = "0x5fc8d32690cc91d4c9d5fad9e1d2e0a5e2b6c8f1"
RECEIVER_CHECKSUM = to_checksum_address(RECEIVER)
SPON = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
USDC = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
TREASURY = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SOL_TREASURY = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"
HX = {"HTTP_HX_REQUEST": "true"}


def text(response) -> str:
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def attr(page: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', page)
    assert found, name
    return html_lib.unescape(found.group(1))


@pytest.fixture
def chains(db, settings, monkeypatch):
    """Arbitrum (ETH, USDC) and Base (ETH, SPON, USDC) as the devnet registers them, Solana with a
    treasury; demo rates dated now; every RPC answering."""
    settings.CHAIN_DEVNET_FINALITY = 3
    addresses = ChainAddresses(receiver=RECEIVER, treasury=TREASURY, spon_token=SPON, test_usdc=USDC)
    registry_sync(
        devnet=True,
        keys=("arbitrum", "base", "solana"),
        addresses={"arbitrum": addresses, "base": addresses, "solana": ChainAddresses(treasury=SOL_TREASURY)},
    )
    monkeypatch.setattr(deposit_pages, "chain_reachable", lambda chain: True)
    return {chain.key: chain for chain in Chain.objects.all()}


def amount_page(client: Client, chain: str, token: str, usd: str) -> str:
    response = client.get("/billing/topup/crypto/amount/", {"chain": chain, "token": token, "usd": usd}, **HX)
    assert response.status_code == 200
    return response.content.decode()


# --- The page ------------------------------------------------------------------------------------
def test_topup_page_needs_login(client: Client):
    response = client.get("/billing/topup/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_page_shows_each_chain_with_receiver_reference_rate_fee_and_minimum(dev_client: Client, developer, chains):
    response = dev_client.get("/billing/topup/")
    page, words = response.content.decode(), text(response)

    assert response.status_code == 200
    assert reference_for(developer).ref in page
    assert [m for m in re.findall(r'data-chain="([a-z]+)"', page)] == ["arbitrum", "base", "solana"]
    assert RECEIVER in page and SOL_TREASURY in page
    assert "1 ETH = $3000 as of" in words and "1 SPON = $0.05" in words and "1 USDC = $1" in words
    base = page[page.index('id="chain-base"') : page.index('id="chain-solana"')]
    fees = dict(re.findall(r'data-token="([A-Z]+)".*?data-testid="fee">([^<]+)<', base, re.S))
    assert fees == {"ETH": "2%", "SPON": "0%", "USDC": "2%"}
    assert "Minimum $1.00" in words
    assert 'data-testid="topup-form"' in page or 'data-testid="card-payments-off"' in page  # cards unchanged
    assert "/static/js/wallet.js" in page and '<script src="http' not in page


def test_overview_links_to_the_crypto_top_up(dev_client: Client, chains):
    page = dev_client.get("/billing/").content.decode()
    assert 'href="/billing/topup/#crypto"' in page


@pytest.mark.parametrize(
    ("symbol", "decimals", "rate", "fee_bps", "usd", "expected"),
    [
        # usd / (rate × (1 − fee)), rounded up in steps of the largest power of ten of base units
        # worth at most a micro-dollar (10^8 wei at $3,000): 0.0068027210884… -> 0.0068027211 ETH
        ("ETH", 18, "3000", 200, 20 * USD, 6_802_721_100_000_000),
        ("SPON", 18, "0.05", 0, 20 * USD, 400 * 10**18),  # exact: no rounding
        ("USDC", 6, "1", 200, 20 * USD, 20_408_164),  # 20.408163265… -> up, in single base units
        ("USDC", 6, "1", 0, 5 * USD, 5_000_000),
        # 0.068027210884… SOL -> 68,027,211 lamports, worth $10.204081 gross, less the fee
        # ($0.204082, rounded half up) is $9.999999: raised lamport by lamport until the watcher's
        # pricing credits the full $10.
        ("SOL", 9, "150", 200, 10 * USD, 68_027_214),
    ],
)
def test_amount_to_send_grosses_up_for_the_fee_and_rounds_up(symbol, decimals, rate, fee_bps, usd, expected):
    token = ChainToken(symbol=symbol, decimals=decimals, fee_bps=fee_bps)
    base_units = deposit_pages.amount_to_send(usd, token=token, usd_per_unit=Decimal(rate))
    assert base_units == expected
    gross, credit = deposit_pages.credit_for(base_units, token=token, usd_per_unit=Decimal(rate))
    assert credit >= usd  # the watcher's own pricing credits at least the figure typed


@pytest.mark.parametrize(
    ("decimals", "rate", "step"),
    [(18, "3000", 10**8), (18, "0.05", 10**13), (6, "1", 1), (9, "150", 1), (18, "5", 10**11), (8, "90000", 1)],
)
def test_the_amount_step_is_worth_at_most_a_micro_dollar(decimals, rate, step):
    assert deposit_pages.amount_step(decimals=decimals, usd_per_unit=Decimal(rate)) == step
    worth_micros = Decimal(step) * Decimal(rate) * 10**6 / 10**decimals
    assert worth_micros <= 1 or step == 1  # a base unit worth more (8 decimals at $90,000) is the step


@pytest.mark.parametrize("usd_cents", [1, 99, 100, 123_45, 999_99, 1_000_00, 77_77])
@pytest.mark.parametrize(("rate", "decimals", "fee_bps"), [("3000", 18, 200), ("0.05", 18, 0), ("1", 6, 200)])
def test_the_credit_is_never_below_the_figure_typed(usd_cents, rate, decimals, fee_bps):
    token = ChainToken(symbol="X", decimals=decimals, fee_bps=fee_bps)
    usd = usd_cents * 10_000
    base_units = deposit_pages.amount_to_send(usd, token=token, usd_per_unit=Decimal(rate))
    assert deposit_pages.credit_for(base_units, token=token, usd_per_unit=Decimal(rate))[1] >= usd


def test_the_calculator_answers_with_the_amount_a_qr_code_and_native_calldata(dev_client: Client, developer, chains):
    fragment = amount_page(dev_client, "arbitrum", "ETH", "20")
    ref = reference_for(developer).ref

    assert fragment.lstrip().startswith('<div id="amount-arbitrum-eth"')
    assert "0.0068027211 ETH" in fragment
    assert "$20.00</span> in credits" in fragment
    assert "<svg" in fragment and 'data-testid="qr"' in fragment
    uri = html_lib.unescape(re.search(r'data-testid="payment-uri">([^<]*)<', fragment).group(1))
    assert uri == (f"ethereum:{RECEIVER_CHECKSUM}@42161/deposit?bytes32={ref}&value=6802721100000000")
    assert attr(fragment, "data-chain-id") == "0xa4b1"
    assert attr(fragment, "data-to") == RECEIVER_CHECKSUM
    assert int(attr(fragment, "data-value"), 16) == 6_802_721_100_000_000
    calldata = bytes.fromhex(attr(fragment, "data-calldata")[2:])
    assert calldata[:4] == function_signature_to_4byte_selector("deposit(bytes32)")
    assert decode(["bytes32"], calldata[4:]) == (bytes.fromhex(ref[2:]),)
    assert attr(fragment, "data-approve-to") == ""


def test_token_calldata_approves_then_deposits_the_token(dev_client: Client, developer, chains):
    fragment = amount_page(dev_client, "base", "USDC", "20")
    ref = bytes.fromhex(reference_for(developer).ref[2:])

    assert "20.408164 USDC" in fragment
    assert int(attr(fragment, "data-value"), 16) == 0
    approve = bytes.fromhex(attr(fragment, "data-approve-calldata")[2:])
    assert attr(fragment, "data-approve-to").lower() == USDC.lower()
    assert approve[:4] == function_signature_to_4byte_selector("approve(address,uint256)")
    assert decode(["address", "uint256"], approve[4:]) == (RECEIVER, 20_408_164)
    deposit = bytes.fromhex(attr(fragment, "data-calldata")[2:])
    assert deposit[:4] == function_signature_to_4byte_selector("depositToken(address,uint256,bytes32)")
    assert decode(["address", "uint256", "bytes32"], deposit[4:]) == (USDC.lower(), 20_408_164, ref)
    uri = html_lib.unescape(re.search(r'data-testid="payment-uri">([^<]*)<', fragment).group(1))
    assert uri.startswith(f"ethereum:{RECEIVER_CHECKSUM}@8453/depositToken?address={to_checksum_address(USDC)}")
    assert uri.endswith(f"&uint256=20408164&bytes32=0x{ref.hex()}")


def test_spon_has_no_fee(dev_client: Client, chains):
    fragment = amount_page(dev_client, "base", "SPON", "20")
    assert "400 SPON" in fragment and "$20.00</span> in credits" in fragment


def test_solana_gets_a_solana_pay_url_and_no_wallet_button(dev_client: Client, developer, chains):
    fragment = amount_page(dev_client, "solana", "SOL", "10")
    ref = reference_for(developer).ref
    uri = html_lib.unescape(re.search(r'data-testid="payment-uri">([^<]*)<', fragment).group(1))
    assert uri == f"solana:{SOL_TREASURY}?amount=0.068027214&memo={ref}&label=Spheron"
    assert "<svg" in fragment and "data-wallet-pay" not in fragment


@pytest.mark.parametrize(
    ("usd", "message"),
    [("abc", "at most two decimal places"), ("0", "above zero"), ("1.234", "at most two decimal places"),
     ("2000000", "at most $1,000,000")],
)  # fmt: skip
def test_a_bad_figure_is_a_message_not_an_amount(dev_client: Client, chains, usd, message):
    fragment = amount_page(dev_client, "arbitrum", "ETH", usd)
    assert message in html_lib.unescape(fragment) and "<svg" not in fragment


def test_below_the_minimum_there_is_no_qr_and_no_button(dev_client: Client, chains):
    fragment = amount_page(dev_client, "arbitrum", "ETH", "0.50")
    assert 'data-testid="below-minimum"' in fragment and "<svg" not in fragment and "data-wallet-pay" not in fragment


def test_an_unknown_chain_or_token_is_a_404(dev_client: Client, chains):
    for query in ({"chain": "nowhere", "token": "ETH"}, {"chain": "arbitrum", "token": "DOGE"}, {}):
        response = dev_client.get("/billing/topup/crypto/amount/", {**query, "usd": "20"}, **HX)
        assert response.status_code == 404


def test_without_javascript_the_calculator_fills_in_the_page(dev_client: Client, chains):
    response = dev_client.get("/billing/topup/crypto/amount/", {"chain": "arbitrum", "token": "ETH", "usd": "20"})
    assert response.status_code == 302
    assert response["Location"] == "/billing/topup/?chain=arbitrum&token=ETH&usd=20#pay-arbitrum-eth"
    page = dev_client.get(response["Location"]).content.decode()
    assert "0.0068027211 ETH" in page and 'value="20"' in page


@pytest.mark.parametrize("age", [timedelta(hours=2), None])
def test_a_stale_or_missing_rate_gives_no_quote_and_no_amount(dev_client: Client, settings, chains, age):
    settings.CHAIN_RATE_MAX_AGE_SECONDS = 3600
    Rate.objects.filter(symbol="ETH").delete()
    if age is not None:
        Rate.objects.create(symbol="ETH", usd_per_unit=3000, at=timezone.now() - age)

    response = dev_client.get("/billing/topup/")
    assert response.status_code == 200
    arbitrum = response.content.decode().split('id="chain-arbitrum"')[1].split('id="chain-base"')[0]
    assert "No quote right now." in arbitrum and "1 ETH =" not in arbitrum
    assert "1 USDC = $1" in arbitrum  # the other token still quotes
    fragment = amount_page(dev_client, "arbitrum", "ETH", "20")
    assert "No quote right now." in fragment and "<svg" not in fragment and "data-wallet-pay" not in fragment


# --- Chains unavailable --------------------------------------------------------------------------
def test_no_enabled_chain_says_so_and_the_card_part_works(dev_client: Client, db):
    response = dev_client.get("/billing/topup/")
    assert response.status_code == 200
    assert "Crypto top-ups are not available on this server" in text(response)
    assert 'id="top-up"' in response.content.decode()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_rpc_says_so_plainly(dev_client: Client, settings, chains, monkeypatch):
    monkeypatch.undo()  # the real probe, against a port nobody listens on
    settings.CHAIN_RPC_URLS = {key: f"http://127.0.0.1:{_closed_port()}" for key in settings.CHAIN_RPC_URLS}
    response = dev_client.get("/billing/topup/")
    assert response.status_code == 200
    assert "none of the chains can be reached" in text(response)
    assert 'data-chain="arbitrum"' not in response.content.decode()


def test_the_probe_reads_the_chain_id_of_a_real_node(anvil, settings, chains, monkeypatch):
    monkeypatch.undo()
    node = anvil(chain_id=42161)
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "arbitrum": node.url, "base": node.url}
    assert deposit_pages.chain_reachable(chains["arbitrum"]) is True
    assert deposit_pages.chain_reachable(chains["base"]) is False  # answers 42161, not 8453


# --- Check a transaction -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("chain", "tx_hash", "status", "message"),
    [
        ("nowhere", "0x" + "ab" * 32, 404, "Unknown chain 'nowhere'"),
        ("arbitrum", "0x1234", 422, "0x followed by 64 hexadecimal digits"),
        ("arbitrum", "", 422, "paste the transaction hash"),
        ("arbitrum", "0x" + "g" * 64, 422, "0x followed by 64 hexadecimal digits"),
        ("arbitrum\x00", "0x" + "ab" * 32, 422, "paste the transaction hash"),
    ],
)
def test_check_form_errors_are_clear_4xx_messages(dev_client: Client, chains, chain, tx_hash, status, message):
    body = {"chain": chain, "tx_hash": tx_hash}
    response = dev_client.post("/billing/topup/crypto/check/", body, **HX)
    assert response.status_code == status and message in html_lib.unescape(response.content.decode())
    page = dev_client.post("/billing/topup/crypto/check/", body)  # without JavaScript: the whole page
    assert page.status_code == status and message in text(page) and 'id="crypto"' in page.content.decode()


def test_check_when_the_rpc_is_down_is_a_503_message(dev_client: Client, settings, chains):
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "arbitrum": f"http://127.0.0.1:{_closed_port()}"}
    response = dev_client.post("/billing/topup/crypto/check/", {"chain": "arbitrum", "tx_hash": "0x" + "ab" * 32}, **HX)
    assert response.status_code == 503 and "cannot be reached right now" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_check_on_a_real_node_not_found_not_a_deposit_and_found(anvil, settings, developer, outsider):
    node = anvil(chain_id=42161, deploy=True)
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "arbitrum": node.url}
    settings.CHAIN_DEVNET_FINALITY = 3
    registry_sync(
        devnet=True,
        keys=("arbitrum",),
        addresses={"arbitrum": ChainAddresses(receiver=node.contracts["PaymentReceiver"], treasury=TREASURY)},
    )
    client = Client()
    client.force_login(developer)

    def check(tx_hash: str):
        return client.post("/billing/topup/crypto/check/", {"chain": "arbitrum", "tx_hash": tx_hash}, **HX)

    missing = check("0x" + "ab" * 32)
    assert missing.status_code == 404 and "No transaction" in missing.content.decode()

    payer = node.w3.eth.accounts[2]
    plain = node.w3.eth.send_transaction({"from": payer, "to": node.w3.eth.accounts[3], "value": 1})
    node.w3.eth.wait_for_transaction_receipt(plain)
    response = check("0x" + bytes(plain).hex())
    assert response.status_code == 422 and "is not a deposit" in response.content.decode()

    receiver = node.contract("PaymentReceiver")
    ref = bytes.fromhex(reference_for(developer).ref[2:])
    paid = receiver.functions.deposit(ref).transact({"from": payer, "value": 10**16})
    node.w3.eth.wait_for_transaction_receipt(paid)
    response = check("0x" + bytes(paid).hex())
    body = html_lib.unescape(response.content.decode())
    assert response.status_code == 200
    assert "Found: 0.01 ETH on Arbitrum One — confirming 1/3" in " ".join(re.sub(r"<[^>]+>", " ", body).split())
    assert 'hx-swap-oob="true"' in body and 'data-status="seen"' in body  # the list, out of band, polling
    assert Deposit.objects.get().user == developer

    # Someone else pasting the same hash learns it is not theirs, and how to claim it if it is.
    stranger = Client()
    stranger.force_login(outsider)
    body = stranger.post(
        "/billing/topup/crypto/check/", {"chain": "arbitrum", "tx_hash": "0x" + bytes(paid).hex()}, **HX
    )
    assert body.status_code == 200 and "it carries another reference (or none)" in body.content.decode()
    assert "confirming" not in body.content.decode().split('id="crypto-deposits"')[0]


# --- The deposits list ---------------------------------------------------------------------------
def _deposit(chain: Chain, user, status: str, n: int, **fields) -> Deposit:
    token = ChainToken.objects.get(chain=chain, symbol="ETH")
    values = {
        "chain": chain, "tx_hash": f"0x{n:064x}", "log_index": 0, "block_number": 100, "payer": TREASURY,
        "token": token, "amount": Decimal(10**16), "account_ref": "", "user": user, "status": status,
        "usd_rate": Decimal(3000), "usd_micros": 30_000_000, "fee_micros": 600_000, **fields,
    }  # fmt: skip
    return Deposit.objects.create(**values)


def test_deposits_show_their_state_and_what_to_do(dev_client: Client, developer, chains, outsider):
    arbitrum = chains["arbitrum"]
    arbitrum.explorer_tx_url = "https://arbiscan.io/tx/{tx}"
    arbitrum.save()
    _deposit(arbitrum, developer, DepositStatus.CREDITED, 1, credited_txn_id=1)
    _deposit(arbitrum, developer, DepositStatus.REORGED, 2)
    _deposit(arbitrum, developer, DepositStatus.BELOW_MINIMUM, 3, usd_micros=500_000, fee_micros=10_000)
    _deposit(arbitrum, developer, DepositStatus.UNMATCHED, 4, token=None, token_address=USDC, usd_micros=None)
    _deposit(arbitrum, outsider, DepositStatus.CREDITED, 5, credited_txn_id=2)  # someone else's

    response = dev_client.get("/billing/topup/")
    page, words = response.content.decode(), text(response)

    states = re.findall(r'data-testid="deposit-state">([^<]+)<', page)
    assert states == ["unmatched", "below minimum", "reorged", "credited $29.40"]
    assert "contact support" in words.lower() and "an operator can credit it to your account or refund it" in words
    assert f"https://arbiscan.io/tx/0x{1:064x}" in page
    assert f"0x{5:064x}" not in page
    assert 'data-pending="true"' not in page  # nothing to wait for: no polling


def test_a_confirming_deposit_polls_until_credited(dev_client: Client, developer, chains):
    deposit = _deposit(chains["arbitrum"], developer, DepositStatus.CONFIRMING, 1, confirmations=2)
    page = dev_client.get("/billing/topup/").content.decode()
    assert "confirming 2/3" in page and 'data-pending="true"' in page and 'hx-trigger="every 3s"' in page

    Deposit.objects.filter(id=deposit.id).update(status=DepositStatus.CREDITED, credited_txn_id=7)
    fragment = dev_client.get("/billing/topup/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="div#crypto-deposits")
    body = fragment.content.decode()
    assert body.lstrip().startswith('<div id="crypto-deposits"') and "<html" not in body
    assert "credited $29.40" in body and 'data-pending="true"' not in body
