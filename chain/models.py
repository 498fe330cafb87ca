"""What the chains are (the registry, editable in the admin) and what happened on them (deposits).

Amounts on chain are base units (wei, lamports, a token's smallest unit) in a DecimalField with no
decimal places: a uint256 does not fit a bigint. USD is integer micro-USD, as in the ledger. The
ledger itself is billing's: a credited deposit names its ledger transaction by id only
(`credited_txn_id`), because chain sits below billing and cannot hold a foreign key to it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from core.fields import BaseUnitsField
from core.money import format_usd


class ChainKind(models.TextChoices):
    EVM = "evm", "EVM"
    SOLANA = "solana", "Solana"


class Chain(models.Model):
    key = models.SlugField(max_length=20, unique=True, help_text='"arbitrum", "base", "solana"…')
    chain_id = models.BigIntegerField(null=True, blank=True, unique=True, help_text="EIP-155 id; empty for Solana")
    name = models.CharField(max_length=60)
    kind = models.CharField(max_length=10, choices=ChainKind.choices)
    native_symbol = models.CharField(max_length=10)
    native_decimals = models.PositiveSmallIntegerField()
    rpc_url = models.URLField(
        max_length=300,
        blank=True,
        help_text="The public RPC URL shown to wallets. The server reads from CHAIN_<KEY>_RPC_URL when set "
        "(a URL with an API key belongs in the environment, never here).",
    )
    finality = models.PositiveIntegerField(help_text="Confirmations (blocks, including the deposit's) before crediting")
    finality_commitment = models.CharField(
        max_length=12, blank=True, help_text='Solana: the commitment that counts as final ("finalized")'
    )
    block_time_ms = models.PositiveIntegerField()
    explorer_tx_url = models.CharField(max_length=300, blank=True, help_text="A URL with {tx} for the hash")
    receiver_address = models.CharField(max_length=64, blank=True, help_text="PaymentReceiver (EVM)")
    treasury_address = models.CharField(max_length=64, blank=True)
    spon_token_address = models.CharField(max_length=64, blank=True)
    min_deposit_usd_micros = models.BigIntegerField(default=5_000_000, help_text="micro-USD")
    enabled = models.BooleanField(default=False)

    class Meta:
        ordering = ("id",)
        constraints = [
            models.CheckConstraint(condition=Q(min_deposit_usd_micros__gte=0), name="chain_minimum_not_negative"),
            models.CheckConstraint(condition=Q(finality__gte=1), name="chain_finality_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    def clean(self) -> None:
        if self.enabled and not (self.receiver_address or self.treasury_address):
            raise ValidationError("An enabled chain needs the address deposits are paid to.")
        if self.explorer_tx_url and "{tx}" not in self.explorer_tx_url:
            raise ValidationError({"explorer_tx_url": "Put {tx} where the transaction hash goes."})

    def explorer_url(self, tx_hash: str) -> str:
        return self.explorer_tx_url.replace("{tx}", tx_hash) if self.explorer_tx_url else ""


class ChainToken(models.Model):
    """A token a chain accepts. An empty address is the chain's native token."""

    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="tokens")
    symbol = models.CharField(max_length=10)
    address = models.CharField(max_length=64, blank=True, help_text="Contract address; empty for the native token")
    decimals = models.PositiveSmallIntegerField()
    fee_bps = models.PositiveIntegerField(default=200, help_text="Fee in basis points (200 = 2%)")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ("chain_id", "id")
        constraints = [
            models.UniqueConstraint(fields=["chain", "symbol"], name="chaintoken_unique_symbol"),
            models.UniqueConstraint(fields=["chain", "address"], name="chaintoken_unique_address"),
            models.CheckConstraint(condition=Q(fee_bps__lte=10_000), name="chaintoken_fee_at_most_all"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} on {self.chain.key}"

    @property
    def is_native(self) -> bool:
        return not self.address


class DepositReference(models.Model):
    """The 32 bytes a user's payments carry. Random, so it says nothing about the user id."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deposit_reference")
    ref = models.CharField(max_length=66, unique=True, help_text="0x and 64 hex digits")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.ref[:10]}… ({self.user_id})"


class Rate(models.Model):
    """A USD price of one whole token at a moment. The latest row per symbol is the quote."""

    symbol = models.CharField(max_length=10, db_index=True)
    usd_per_unit = models.DecimalField(max_digits=30, decimal_places=12)
    at = models.DateTimeField(help_text="When this price was true (not when it was typed in)")
    source = models.CharField(max_length=60, default="admin")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ("symbol", "-at", "-id")
        indexes = [models.Index(fields=["symbol", "-at", "-id"], name="rate_latest")]
        constraints = [models.CheckConstraint(condition=Q(usd_per_unit__gt=0), name="rate_positive")]

    def __str__(self) -> str:
        return f"{self.symbol} = ${self.usd_per_unit} at {self.at:%Y-%m-%d %H:%M} ({self.source})"


class WatchCursor(models.Model):
    chain = models.OneToOneField(Chain, on_delete=models.CASCADE, related_name="cursor")
    last_block = models.BigIntegerField(help_text="Processed up to and including this block (or slot)")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.chain.key} at {self.last_block}"


class DepositStatus(models.TextChoices):
    SEEN = "seen", "Seen"
    CONFIRMING = "confirming", "Confirming"
    FINAL = "final", "Final (being credited)"
    CREDITED = "credited", "Credited"
    REORGED = "reorged", "Gone in a reorg"
    BELOW_MINIMUM = "below_minimum", "Below the minimum"
    UNMATCHED = "unmatched", "Unmatched"
    REFUNDED = "refunded", "Refunded"


# Still waiting for finality: the watcher counts their confirmations and re-reads them at finality.
# The admin queue's statuses are included until `final_at` is set: an operator assigns only a
# deposit that is known to have survived to finality.
OPEN_STATUSES = (DepositStatus.SEEN, DepositStatus.CONFIRMING)
QUEUE_STATUSES = (DepositStatus.UNMATCHED, DepositStatus.BELOW_MINIMUM)


class Deposit(models.Model):
    """One payment event seen on chain, stored raw under (chain, tx hash, log index) before anything
    is decided about it."""

    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="deposits")
    tx_hash = models.CharField(max_length=100)
    log_index = models.PositiveIntegerField(help_text="EVM: the log's index in its block; Solana: the instruction")
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=100, blank=True)
    payer = models.CharField(max_length=64)
    token = models.ForeignKey(ChainToken, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    token_address = models.CharField(max_length=64, blank=True, help_text="As sent; empty for native")
    amount = BaseUnitsField(help_text="base units")
    account_ref = models.CharField(max_length=100, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="deposits"
    )
    status = models.CharField(max_length=14, choices=DepositStatus.choices, default=DepositStatus.SEEN)
    confirmations = models.PositiveIntegerField(default=0)
    usd_rate = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    rate_at = models.DateTimeField(null=True, blank=True, help_text="The time of the rate used")
    usd_micros = models.BigIntegerField(null=True, blank=True, help_text="Gross, at usd_rate")
    fee_micros = models.BigIntegerField(null=True, blank=True)
    credited_txn_id = models.BigIntegerField(null=True, blank=True, unique=True, help_text="billing ledger txn")
    raw = models.JSONField(default=dict)
    seen_at = models.DateTimeField(auto_now_add=True, db_index=True)
    final_at = models.DateTimeField(null=True, blank=True)
    credited_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolution_note = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain", "tx_hash", "log_index"], name="deposit_unique_event"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="deposit_amount_not_negative"),
            models.CheckConstraint(
                condition=~Q(status="credited") | Q(credited_txn_id__isnull=False, user__isnull=False),
                name="deposit_credited_has_txn",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "chain"], name="deposit_status_chain"),
            models.Index(fields=["user", "-id"], name="deposit_user_newest"),
        ]

    def __str__(self) -> str:
        usd = f" {format_usd(self.usd_micros)}" if self.usd_micros is not None else ""
        return f"Deposit #{self.pk} on {self.chain.key}{usd} ({self.status})"

    @property
    def credit_micros(self) -> int | None:
        """What the user gets: the gross less the token's fee."""
        if self.usd_micros is None or self.fee_micros is None:
            return None
        return self.usd_micros - self.fee_micros


class TxStatus(models.TextChoices):
    RECORDED = "recorded", "Recorded (not sent yet)"
    SENT = "sent", "Sent (waiting for a receipt)"
    MINED = "mined", "Mined"
    FAILED = "failed", "Failed"
    REPLACED = "replaced", "Nonce used by another transaction"
    STUCK = "stuck", "Stuck (needs an operator)"


class ChainTransaction(models.Model):
    """A transaction the platform sends (chain.sender), recorded before anything is sent.

    (purpose, reference) is the caller's idempotency key ("slash:42"): a retry finds this row and
    never makes a second. The nonce is the app's (SenderNonce), assigned once; a re-send keeps it
    and raises the fees, and every hash signed for it stays in `history`, so whichever of them is
    mined is recognised. `raw_tx` is the signed transaction of `tx_hash` (public once broadcast),
    kept to re-broadcast the very same bytes after a crash; the key itself lives in the environment
    variable `key_env` only.
    """

    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="transactions")
    purpose = models.CharField(max_length=40, help_text='"slash", "commitments", "payout"…')
    reference = models.CharField(max_length=120, help_text='The caller\'s idempotency key, e.g. "slash:42"')
    key_env = models.CharField(max_length=80, help_text="The environment variable holding the sender's key")
    sender = models.CharField(max_length=64)
    to = models.CharField(max_length=64)
    value = BaseUnitsField(default=0, help_text="base units")
    data = models.TextField(default="0x", help_text="Calldata, 0x-hex")
    nonce = models.BigIntegerField(null=True, blank=True)
    gas_limit = models.BigIntegerField(null=True, blank=True)
    max_fee_per_gas = BaseUnitsField(null=True, blank=True, help_text="base units")
    max_priority_fee_per_gas = BaseUnitsField(null=True, blank=True, help_text="base units")
    status = models.CharField(max_length=10, choices=TxStatus.choices, default=TxStatus.RECORDED)
    tx_hash = models.CharField(max_length=66, blank=True, help_text="The latest signed hash")
    raw_tx = models.TextField(blank=True, help_text="The signed transaction of tx_hash")
    history = models.JSONField(default=list, blank=True, help_text="[{hash, max_fee, priority_fee, at}]")
    attempts = models.PositiveIntegerField(default=0, help_text="Signed versions broadcast")
    receipt_block = models.BigIntegerField(null=True, blank=True)
    receipt_status = models.PositiveSmallIntegerField(null=True, blank=True)
    gas_used = models.BigIntegerField(null=True, blank=True)
    revert_reason = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=500, blank=True, help_text="The last error (RPC, signing)")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="The latest broadcast")
    mined_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-id",)
        constraints = [
            models.UniqueConstraint(fields=["purpose", "reference"], name="chaintx_unique_reference"),
            models.UniqueConstraint(fields=["chain", "sender", "nonce"], name="chaintx_unique_nonce"),
            models.CheckConstraint(condition=Q(value__gte=0), name="chaintx_value_not_negative"),
        ]
        indexes = [models.Index(fields=["status", "chain"], name="chaintx_status_chain")]

    def __str__(self) -> str:
        return f"{self.purpose} {self.reference} on {self.chain.key} ({self.status})"


class SenderNonce(models.Model):
    """The next nonce of a sending address on a chain, assigned by the app under this row's lock."""

    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="+")
    address = models.CharField(max_length=64)
    next_nonce = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain", "address"], name="sendernonce_unique_address"),
            models.CheckConstraint(condition=Q(next_nonce__gte=0), name="sendernonce_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.address} on {self.chain.key}: next {self.next_nonce}"
