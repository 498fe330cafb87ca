"""Reads for the crypto half of the top-up page: per enabled chain and token, where to pay, the
rate, the fee, the minimum; the amount to send for a USD figure (exact, rounded up in base units);
the QR code and the wallet's calldata for that amount; whether the chain's RPC answers; and the
user's deposits with their state in words.

The page's money math lives here, on the server, so the browser never does float arithmetic or ABI
encoding: it gets the amount in base units, the calldata and the QR code ready-made.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, localcontext
from functools import cache
from urllib.parse import quote as urlquote

import segno
from django.conf import settings
from django.core.cache import cache as django_cache

from accounts.models import User
from billing.forms import parse_usd_amount
from chain import rates
from chain.evm.client import rpc_url_for
from chain.models import Chain, ChainKind, ChainToken, Deposit, DepositStatus
from chain.selectors import chains_enabled, deposit_page
from chain.services import reference_for
from core.errors import ApplicationError
from core.money import format_usd

logger = logging.getLogger(__name__)

MICROS = Decimal(1_000_000)
BPS = 10_000
MAX_USD_MICROS = 1_000_000 * 1_000_000  # $1,000,000: a figure typed into a calculator, bounded
PROBE_TIMEOUT_SECONDS = 1.5
PROBE_CACHE_SECONDS = 10
DEPOSITS_SHOWN = 20
# Not final yet: the deposits list refreshes itself while one of these is on it.
PENDING_STATUSES = (DepositStatus.SEEN, DepositStatus.CONFIRMING, DepositStatus.FINAL)


# --- Amounts -------------------------------------------------------------------------------------
def parse_usd(text: object) -> int:
    """The calculator's USD figure -> micro-USD (at most two decimals, above zero, bounded)."""
    micros = parse_usd_amount(text if isinstance(text, str) else "", field="usd")
    if micros > MAX_USD_MICROS:
        raise ApplicationError("Enter at most $1,000,000.", {"field": "usd"})
    return micros


def credit_for(base_units: int, *, token: ChainToken, usd_per_unit: Decimal) -> tuple[int, int]:
    """(gross, credit) micro-USD for `base_units` as the watcher prices a deposit (chain.rates:
    gross rounded down, fee rounded half up)."""
    gross = rates.usd_micros_for(base_units, decimals=token.decimals, usd_per_unit=usd_per_unit)
    return gross, gross - rates.fee_micros_for(gross, fee_bps=token.fee_bps)


def amount_step(*, decimals: int, usd_per_unit: Decimal) -> int:
    """The largest power of ten of base units worth at most one micro-dollar (at least 1): the
    granularity of the amount to send. 10^8 wei for ETH at $3,000, so the page asks for
    0.0068027211 ETH, not 0.006802721088435375 ETH: digits a person can copy, for at most a
    micro-dollar more."""
    per_micro = (Decimal(10) ** decimals) / (usd_per_unit * MICROS)
    if per_micro < 10:
        return 1
    return 10 ** (len(str(int(per_micro))) - 1)


def amount_to_send(usd_micros: int, *, token: ChainToken, usd_per_unit: Decimal) -> int:
    """Base units to send so that `usd_micros` is credited after the token's fee:
    usd / (rate × (1 − fee)), rounded up to the token's base units in steps of `amount_step`.

    The watcher rounds too when it prices the deposit (the gross down to a micro-dollar, the fee
    half up), so the result is then raised step by step until that pricing credits at least the
    figure typed: the user gets what the page promised, never a micro-dollar less."""
    if token.fee_bps >= BPS:
        raise ApplicationError(f"{token.symbol} is not accepted for top-ups (its fee is 100%).")
    step = amount_step(decimals=token.decimals, usd_per_unit=usd_per_unit)
    with localcontext() as context:
        context.prec = 120  # a uint256 has 78 digits: no quotient here is ever rounded before the ceiling
        scale = Decimal(10) ** token.decimals
        exact = Decimal(usd_micros) * scale * BPS / (usd_per_unit * MICROS * (BPS - token.fee_bps))
        base_units = int((exact / step).to_integral_value(rounding=ROUND_CEILING)) * step
    for _ in range(50):  # a step is worth at least a tenth of a micro-dollar: a few steps at most
        if credit_for(base_units, token=token, usd_per_unit=usd_per_unit)[1] >= usd_micros:
            break
        base_units += step
    return base_units


def token_amount_text(base_units: int, decimals: int) -> str:
    """Base units as a whole-token decimal, exact: 6802721088435375 wei -> '0.006802721088435375'."""
    value = Decimal(base_units).scaleb(-decimals)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fee_text(fee_bps: int) -> str:
    return f"{(Decimal(fee_bps) / 100).normalize():f}%"


# --- Calldata and payment URIs ------------------------------------------------------------------
@cache
def _abi_functions(contract_name: str) -> dict[str, list[str]]:
    from chain.evm import artifacts

    return {
        item["name"]: [arg["type"] for arg in item.get("inputs", [])]
        for item in artifacts.abi(contract_name)
        if item.get("type") == "function"
    }


def encode_call(contract_name: str, function: str, args: list) -> str:
    """0x calldata for `function` of the compiled contract: the selector from its ABI signature
    (contracts/build), then the ABI-encoded arguments."""
    from eth_abi import encode
    from eth_utils import function_signature_to_4byte_selector

    types = _abi_functions(contract_name)[function]
    selector = function_signature_to_4byte_selector(f"{function}({','.join(types)})")
    return "0x" + (selector + encode(types, args)).hex()


def _ref_bytes(ref: str) -> bytes:
    return bytes.fromhex(ref.removeprefix("0x"))


def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


def eip681_uri(chain: Chain, token: ChainToken, *, ref: str, base_units: int) -> str:
    """An EIP-681 function-call URI for the QR code. Wallets vary in what they support: most scan
    the address and chain, fewer fill in a contract call with a bytes32 argument, so the page also
    shows every value in words and offers the wallet button."""
    receiver = _checksum(chain.receiver_address)
    if token.is_native:
        return f"ethereum:{receiver}@{chain.chain_id}/deposit?bytes32={ref}&value={base_units}"
    return (
        f"ethereum:{receiver}@{chain.chain_id}/depositToken"
        f"?address={_checksum(token.address)}&uint256={base_units}&bytes32={ref}"
    )


def solana_pay_uri(chain: Chain, *, ref: str, base_units: int, decimals: int) -> str:
    """A Solana Pay transfer request: SOL to the treasury, the reference as the memo."""
    amount = token_amount_text(base_units, decimals)
    return f"solana:{chain.treasury_address}?amount={amount}&memo={urlquote(ref)}&label=Spheron"


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no script, no outside request)."""
    return segno.make(uri, error="m", micro=False).svg_inline(scale=3, border=2, dark="#111", light="#fff")


# --- The page's model -----------------------------------------------------------------------------
@dataclass
class WalletCall:
    """What the wallet button sends, computed here: JS only forwards it to the wallet."""

    chain_id_hex: str
    to: str
    value_hex: str
    data: str
    approve_to: str = ""  # a token: approve(receiver, amount) on the token first
    approve_data: str = ""


@dataclass
class Amount:
    usd_micros: int
    base_units: int = 0
    amount_text: str = ""
    gross_micros: int = 0
    credit_micros: int = 0
    below_minimum: bool = False
    uri: str = ""
    qr: str = ""
    wallet: WalletCall | None = None
    error: str = ""


@dataclass
class TokenOption:
    chain: Chain
    token: ChainToken
    quote: rates.Quote | None
    no_quote_reason: str
    amount: Amount | None = None
    usd_text: str = ""

    @property
    def dom_id(self) -> str:
        return f"amount-{self.chain.key}-{self.token.symbol.lower()}"

    @property
    def fee(self) -> str:
        return fee_text(self.token.fee_bps)

    @property
    def rate_text(self) -> str:
        """'3000', not '3E+3'."""
        return f"{self.quote.usd_per_unit.normalize():f}" if self.quote else ""

    @property
    def pays_with_wallet(self) -> bool:
        return self.chain.kind == ChainKind.EVM

    @property
    def devnet_pays(self) -> bool:
        """On a local devnet (DEBUG), the native coin can be sent from the devnet's test wallet by
        the server (chain.devnet.demo_pay): a demo needs no browser wallet."""
        return settings.DEBUG and settings.CHAIN_DEVNET and not self.token.address


@dataclass
class ChainSection:
    chain: Chain
    reachable: bool
    options: list[TokenOption] = field(default_factory=list)

    @property
    def pay_to(self) -> str:
        return self.chain.receiver_address if self.chain.kind == ChainKind.EVM else self.chain.treasury_address

    @property
    def minimum(self) -> str:
        return format_usd(self.chain.min_deposit_usd_micros, 6)


@dataclass
class CryptoTopup:
    reference: str
    sections: list[ChainSection]
    devnet: bool

    @property
    def reachable(self) -> list[ChainSection]:
        return [section for section in self.sections if section.reachable]

    @property
    def unreachable(self) -> list[ChainSection]:
        return [section for section in self.sections if not section.reachable]


def _probe(url: str, kind: str, chain_id: int | None) -> bool:
    method = "eth_chainId" if kind == ChainKind.EVM else "getHealth"
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_SECONDS) as response:
            answer = json.loads(response.read(10_000))
    except (OSError, urllib.error.URLError, ValueError):
        return False
    if not isinstance(answer, dict) or "result" not in answer:
        return False
    if kind == ChainKind.EVM:
        try:
            return int(answer["result"], 16) == chain_id  # a node for another chain is no use
        except (TypeError, ValueError):
            return False
    return True


def chain_reachable(chain: Chain) -> bool:
    """Whether the server's RPC for `chain` answers now (cached for a few seconds)."""
    url = rpc_url_for(chain)
    if not url:
        return False
    key = f"chain-reachable:{chain.key}:{chain.chain_id}:{url}"
    known = django_cache.get(key)
    if known is not None:
        return bool(known)
    answer = _probe(url, chain.kind, chain.chain_id)
    django_cache.set(key, answer, PROBE_CACHE_SECONDS)
    return answer


def _reachability(chains: list[Chain]) -> list[bool]:
    if len(chains) <= 1:
        return [chain_reachable(chain) for chain in chains]
    # In parallel: a page with eight unreachable chains waits one timeout, not eight.
    with ThreadPoolExecutor(max_workers=min(8, len(chains))) as pool:
        return list(pool.map(chain_reachable, chains))


def crypto_topup(*, user: User) -> CryptoTopup:
    """Every enabled chain with its tokens, rates and whether its RPC answers."""
    chains = [chain for chain in chains_enabled() if chain.receiver_address or chain.treasury_address]
    reachable = _reachability(chains)
    quotes: dict[str, rates.QuoteResult] = {}
    sections = []
    for chain, is_reachable in zip(chains, reachable, strict=True):
        section = ChainSection(chain=chain, reachable=is_reachable)
        for token in chain.tokens.all():
            if chain.kind == ChainKind.SOLANA and not token.is_native:
                continue  # SPL tokens are not taken on Solana (SOL with a memo only)
            if token.symbol not in quotes:
                quotes[token.symbol] = rates.quote_or_reason(token.symbol)
            result = quotes[token.symbol]
            section.options.append(TokenOption(chain, token, result.quote, result.reason))
        sections.append(section)
    return CryptoTopup(reference=reference_for(user).ref, sections=sections, devnet=settings.CHAIN_DEVNET)


def token_option(*, chain_key: object, symbol: object) -> TokenOption:
    """One enabled chain's token with its current quote; a 404 ApplicationError otherwise."""
    if not isinstance(chain_key, str) or not isinstance(symbol, str) or len(chain_key) > 20 or len(symbol) > 10:
        raise ApplicationError("Choose a chain and a token from the page.", status=404)
    token = (
        ChainToken.objects.filter(chain__key=chain_key, chain__enabled=True, symbol=symbol, enabled=True)
        .select_related("chain")
        .first()
    )
    if token is None:
        raise ApplicationError(f"{symbol} on {chain_key!r} is not taken for top-ups.", status=404)
    result = rates.quote_or_reason(token.symbol)
    return TokenOption(token.chain, token, result.quote, result.reason)


def amount_for(option: TokenOption, *, usd_micros: int, ref: str) -> Amount:
    """The amount to send for `usd_micros`, its QR code and the wallet's calls. No quote: an
    Amount with only the reason (no figure is better than a wrong one)."""
    if option.quote is None:
        return Amount(usd_micros=usd_micros, error=option.no_quote_reason or "No quote right now.")
    chain, token, rate = option.chain, option.token, option.quote.usd_per_unit
    base_units = amount_to_send(usd_micros, token=token, usd_per_unit=rate)
    gross, credit = credit_for(base_units, token=token, usd_per_unit=rate)
    amount = Amount(
        usd_micros=usd_micros,
        base_units=base_units,
        amount_text=token_amount_text(base_units, token.decimals),
        gross_micros=gross,
        credit_micros=credit,
        below_minimum=gross < chain.min_deposit_usd_micros,
    )
    if amount.below_minimum:
        return amount  # no QR, no button: such a payment would wait for an operator
    if chain.kind == ChainKind.EVM:
        amount.uri = eip681_uri(chain, token, ref=ref, base_units=base_units)
        receiver = _checksum(chain.receiver_address)
        if token.is_native:
            amount.wallet = WalletCall(
                chain_id_hex=hex(chain.chain_id or 0),
                to=receiver,
                value_hex=hex(base_units),
                data=encode_call("PaymentReceiver", "deposit", [_ref_bytes(ref)]),
            )
        else:
            token_address = _checksum(token.address)
            amount.wallet = WalletCall(
                chain_id_hex=hex(chain.chain_id or 0),
                to=receiver,
                value_hex="0x0",
                data=encode_call("PaymentReceiver", "depositToken", [token_address, base_units, _ref_bytes(ref)]),
                approve_to=token_address,
                approve_data=encode_call("TestUSDC", "approve", [receiver, base_units]),
            )
    else:
        amount.uri = solana_pay_uri(chain, ref=ref, base_units=base_units, decimals=token.decimals)
    amount.qr = qr_svg(amount.uri)
    return amount


# --- Deposits ------------------------------------------------------------------------------------
@dataclass
class DepositRow:
    deposit: Deposit
    state: str  # short words for the status column
    detail: str  # what it means / what to do
    pending: bool
    explorer_url: str
    amount_text: str
    at: datetime


def _deposit_words(deposit: Deposit) -> tuple[str, str]:
    chain = deposit.chain
    status = deposit.status
    if status in (DepositStatus.SEEN, DepositStatus.CONFIRMING):
        seen = min(deposit.confirmations, chain.finality)
        detail = f"Credited after {chain.finality} confirmations."
        if deposit.usd_micros is None:
            detail += " Waiting for a USD rate to value it."
        return f"confirming {seen}/{chain.finality}", detail
    if status == DepositStatus.FINAL:
        return "final, crediting…", "Final on chain; the credit is being posted."
    if status == DepositStatus.CREDITED:
        credit = format_usd(deposit.credit_micros or 0, 6)
        fee = f" after a {format_usd(deposit.fee_micros, 6)} fee" if deposit.fee_micros else ""
        return f"credited {credit}", f"Added to your balance{fee}."
    support = "Contact support with the transaction hash: an operator can credit it to your account or refund it."
    if status == DepositStatus.REORGED:
        return "reorged", (
            "The block with this payment was replaced before it was final: nothing was paid or credited. "
            "If your wallet shows the transaction confirmed, paste its hash below."
        )
    if status == DepositStatus.BELOW_MINIMUM:
        minimum = format_usd(chain.min_deposit_usd_micros, 6)
        return "below minimum", f"Worth less than the {minimum} minimum on {chain.name}, so not credited. {support}"
    if status == DepositStatus.UNMATCHED:
        why = "in a token that is not accepted" if deposit.token_id is None else "without a known reference"
        return "unmatched", f"Paid {why}, so not credited automatically. {support}"
    if status == DepositStatus.REFUNDED:
        note = f" ({deposit.resolution_note})" if deposit.resolution_note else ""
        return "refunded", f"Sent back by an operator{note}."
    return deposit.get_status_display(), ""


def deposit_row(deposit: Deposit) -> DepositRow:
    state, detail = _deposit_words(deposit)
    if deposit.token_id:
        amount = f"{token_amount_text(int(deposit.amount), deposit.token.decimals)} {deposit.token.symbol}"
    else:
        amount = f"{int(deposit.amount)} base units of {deposit.token_address or '?'}"
    return DepositRow(
        deposit=deposit,
        state=state,
        detail=detail,
        pending=deposit.status in PENDING_STATUSES,
        explorer_url=deposit.chain.explorer_url(deposit.tx_hash),
        amount_text=amount,
        at=deposit.seen_at,
    )


def deposit_rows(*, user: User) -> list[DepositRow]:
    """The user's latest deposits, newest first, in words."""
    return [deposit_row(deposit) for deposit in deposit_page(user=user, limit=DEPOSITS_SHOWN).rows]


def deposit_rows_for(*, ids: list[int]) -> list[DepositRow]:
    """Rows for the deposits a checked transaction holds (whoever they belong to)."""
    found = Deposit.objects.filter(id__in=ids).select_related("chain", "token").order_by("log_index")
    return [deposit_row(deposit) for deposit in found]


def check_chains() -> list[Chain]:
    """The chains a pasted hash can be checked on."""
    return list(Chain.objects.filter(enabled=True).order_by("id"))
