"""The chain registry's defaults, and `registry_sync` that writes them as rows.

The rows are the truth once written: operators edit them in the admin (an RPC URL, a receiver
address, a finality, a fee), and a later sync leaves what exists alone unless told to overwrite.
`manage.py chains_sync` runs it; the devnet command passes the addresses of the contracts it
deployed.

Finality defaults (production) and where each comes from (see also
../shared/reference/protocol-facts.md, "Chains in practice"):

- Arbitrum One, Optimism, Base: 20 blocks. Custodians and exchanges credit optimistic rollups after
  12–40 L2 confirmations (Optimism commonly 12); 20 is within that range for all three. It guards
  against a sequencer reorg of its unsafe head, not against L1 fault proofs (7 days), which no
  exchange waits for on a deposit.
- BNB Smart Chain: 15 blocks, what most custodians use (fast finality, BEP-126, makes a block final
  after two more); some wait 96, and an operator can raise it here.
- Avalanche C-Chain: 20 blocks. Snowman finalizes a block once accepted (custodians use 1–20);
  the top of that range costs seconds.
- Filecoin FVM: 900 epochs (7.5 h at 30 s), the chain's own soft-finality bound (EC finality).
  With F3 fast finality live, an operator may lower it; the default stays the conservative one.
- zkSync Era: 3,600 blocks, about an hour at ~1 s blocks: the time for the batch holding the
  deposit to be proven on L1. The sequencer's confirmation (seconds) is one operator's promise;
  waiting for L1 execution (~24 h, after the execution delay) is safer still but too slow for a
  prepaid balance, and a proven batch no longer depends on the sequencer's honesty.
- Solana: the `finalized` commitment (a supermajority rooted the slot; 31+ confirmed blocks), which
  is what exchanges use. `finality` = 32 is the slot count shown as "n/N" while it confirms.

Devnet (CHAIN_DEVNET, on by default with DEBUG): local RPC URLs (127.0.0.1:85xx, one anvil per
EVM chain with its real chain id), finality CHAIN_DEVNET_FINALITY blocks (3 by default) so a demo
credits in seconds, a $1 minimum, the test USDC, and demo rates written with the time of the sync
(marked "devnet default" as their source; they are not prices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chain.models import Chain, ChainKind, ChainToken, Rate

NATIVE_FEE_BPS = 200  # 2% when paying in anything but $SPON, as the public protocol charges
SPON_FEE_BPS = 0
DEFAULT_MIN_DEPOSIT_USD_MICROS = 5_000_000  # $5, the card top-up minimum
DEVNET_MIN_DEPOSIT_USD_MICROS = 1_000_000


@dataclass(frozen=True)
class ChainDefault:
    key: str
    chain_id: int | None
    name: str
    kind: str
    native_symbol: str
    native_decimals: int
    public_rpc_url: str
    finality: int
    block_time_ms: int
    explorer_tx_url: str
    finality_commitment: str = ""
    has_spon: bool = False


CHAIN_DEFAULTS: tuple[ChainDefault, ...] = (
    ChainDefault(
        "zksync", 324, "zkSync Era", ChainKind.EVM, "ETH", 18, "https://mainnet.era.zksync.io",
        3600, 1000, "https://explorer.zksync.io/tx/{tx}",
    ),
    ChainDefault(
        "arbitrum", 42161, "Arbitrum One", ChainKind.EVM, "ETH", 18, "https://arb1.arbitrum.io/rpc",
        20, 250, "https://arbiscan.io/tx/{tx}",
    ),
    ChainDefault(
        "optimism", 10, "OP Mainnet", ChainKind.EVM, "ETH", 18, "https://mainnet.optimism.io",
        20, 2000, "https://optimistic.etherscan.io/tx/{tx}",
    ),
    # BNB Smart Chain: 0.75 s blocks since the Maxwell upgrade (2025).
    ChainDefault(
        "bnb", 56, "BNB Smart Chain", ChainKind.EVM, "BNB", 18, "https://bsc-dataseed.bnbchain.org",
        15, 750, "https://bscscan.com/tx/{tx}",
    ),
    ChainDefault(
        "avalanche", 43114, "Avalanche C-Chain", ChainKind.EVM, "AVAX", 18, "https://api.avax.network/ext/bc/C/rpc",
        20, 2000, "https://snowtrace.io/tx/{tx}",
    ),
    ChainDefault(
        "filecoin", 314, "Filecoin FVM", ChainKind.EVM, "FIL", 18, "https://api.node.glif.io/rpc/v1",
        900, 30000, "https://filfox.info/en/message/{tx}",
    ),
    ChainDefault(
        "base", 8453, "Base", ChainKind.EVM, "ETH", 18, "https://mainnet.base.org",
        20, 2000, "https://basescan.org/tx/{tx}", has_spon=True,
    ),
    ChainDefault(
        "solana", None, "Solana", ChainKind.SOLANA, "SOL", 9, "https://api.mainnet-beta.solana.com",
        32, 400, "https://explorer.solana.com/tx/{tx}", finality_commitment="finalized",
    ),
)  # fmt: skip
CHAIN_KEYS = tuple(default.key for default in CHAIN_DEFAULTS)
DEFAULTS_BY_KEY = {default.key: default for default in CHAIN_DEFAULTS}

SPON_SYMBOL = "SPON"
SPON_DECIMALS = 18
TEST_USDC_SYMBOL = "USDC"
TEST_USDC_DECIMALS = 6

# Devnet only: demo prices so quotes work offline. Written with the time of the sync.
DEVNET_RATES = {
    "ETH": Decimal("3000"),
    "BNB": Decimal("600"),
    "AVAX": Decimal("30"),
    "FIL": Decimal("5"),
    "SOL": Decimal("150"),
    "SPON": Decimal("0.05"),
    "USDC": Decimal("1"),
}
DEVNET_RATE_SOURCE = "devnet default"


def devnet_rpc_url(key: str) -> str:
    return f"http://127.0.0.1:{settings.CHAIN_DEVNET_PORTS[key]}"


@dataclass
class ChainAddresses:
    """Contract addresses for one chain (what a deploy produced, or what an operator configured)."""

    receiver: str = ""
    treasury: str = ""
    spon_token: str = ""
    test_usdc: str = ""


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    tokens_created: list[str] = field(default_factory=list)
    rates_seeded: list[str] = field(default_factory=list)


def _chain_values(default: ChainDefault, *, devnet: bool, addresses: ChainAddresses | None) -> dict:
    values = {
        "chain_id": default.chain_id,
        "name": default.name,
        "kind": default.kind,
        "native_symbol": default.native_symbol,
        "native_decimals": default.native_decimals,
        "rpc_url": devnet_rpc_url(default.key) if devnet else default.public_rpc_url,
        "finality": settings.CHAIN_DEVNET_FINALITY if devnet else default.finality,
        "finality_commitment": default.finality_commitment,
        "block_time_ms": default.block_time_ms,
        "explorer_tx_url": "" if devnet else default.explorer_tx_url,
        "min_deposit_usd_micros": DEVNET_MIN_DEPOSIT_USD_MICROS if devnet else DEFAULT_MIN_DEPOSIT_USD_MICROS,
    }
    if addresses is not None:
        values.update(
            {
                "receiver_address": addresses.receiver,
                "treasury_address": addresses.treasury,
                "spon_token_address": addresses.spon_token,
                # A chain with somewhere to pay into is enabled when its addresses are written.
                "enabled": bool(addresses.receiver or addresses.treasury),
            }
        )
    return values


def _token_rows(chain: Chain, default: ChainDefault, *, devnet: bool, addresses: ChainAddresses | None) -> list[dict]:
    rows = [
        {"symbol": default.native_symbol, "address": "", "decimals": default.native_decimals, "fee_bps": NATIVE_FEE_BPS}
    ]
    spon = (addresses.spon_token if addresses else "") or chain.spon_token_address
    # A token row needs its contract address (an empty address means the native token), so $SPON
    # and the test USDC are written once their addresses are known.
    if default.has_spon and spon:
        rows.append({"symbol": SPON_SYMBOL, "address": spon, "decimals": SPON_DECIMALS, "fee_bps": SPON_FEE_BPS})
    if devnet and addresses is not None and addresses.test_usdc:
        rows.append(
            {
                "symbol": TEST_USDC_SYMBOL,
                "address": addresses.test_usdc,
                "decimals": TEST_USDC_DECIMALS,
                "fee_bps": NATIVE_FEE_BPS,
            }
        )
    return rows


@transaction.atomic
def registry_sync(
    *,
    devnet: bool | None = None,
    overwrite: bool = False,
    addresses: dict[str, ChainAddresses] | None = None,
    keys: tuple[str, ...] | None = None,
) -> SyncResult:
    """Write the default chains and tokens; existing rows keep an operator's edits unless
    `overwrite`. Addresses given for a chain are always written (a deploy just produced them).
    On a devnet, demo rates are written with now() as their time."""
    devnet = settings.CHAIN_DEVNET if devnet is None else devnet
    addresses = addresses or {}
    result = SyncResult()
    for default in CHAIN_DEFAULTS:
        if keys is not None and default.key not in keys:
            continue
        chain_addresses = addresses.get(default.key)
        values = _chain_values(default, devnet=devnet, addresses=chain_addresses)
        chain = Chain.objects.select_for_update().filter(key=default.key).first()
        if chain is None:
            chain = Chain.objects.create(key=default.key, **values)
            result.created.append(chain.key)
        else:
            if not overwrite:
                address_fields = {"receiver_address", "treasury_address", "spon_token_address", "enabled"}
                values = {name: value for name, value in values.items() if name in address_fields}
            if values:
                for name, value in values.items():
                    setattr(chain, name, value)
                chain.save(update_fields=list(values))
                result.updated.append(chain.key)
        for row in _token_rows(chain, default, devnet=devnet, addresses=chain_addresses):
            token = ChainToken.objects.filter(chain=chain, symbol=row["symbol"]).first()
            if token is None:
                ChainToken.objects.create(chain=chain, **row)
                result.tokens_created.append(f"{row['symbol']}@{chain.key}")
            elif overwrite or token.address != row["address"]:
                for name, value in row.items():
                    setattr(token, name, value)
                token.save()
    if devnet:
        result.rates_seeded = rates_seed_devnet()
    return result


def rates_seed_devnet() -> list[str]:
    """Demo rates dated now (the quote interface treats an old rate as stale, so each sync
    refreshes them)."""
    now = timezone.now()
    Rate.objects.bulk_create(
        [
            Rate(symbol=symbol, usd_per_unit=price, at=now, source=DEVNET_RATE_SOURCE)
            for symbol, price in DEVNET_RATES.items()
        ]
    )
    return list(DEVNET_RATES)
