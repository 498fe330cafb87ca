"""The ledger: append-only, double-entry, integer micro-USD.

Sign convention: an account's balance is the sum of its entries. Accounts that hold value for
someone (a user's available credits, a provider's earnings, platform fees) are positive; clearing
accounts (money that came in from Stripe or a chain) go negative as money enters. A user's debt
account is negative by what the user owes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.fields import BaseUnitsField
from core.money import format_usd


class AccountKind(models.TextChoices):
    USER_AVAILABLE = "user_available", "User: available credits"
    USER_RESERVED = "user_reserved", "User: reserved by holds"
    USER_DEBT = "user_debt", "User: debt (negative = owed)"
    PROVIDER_PENDING = "provider_pending", "Provider: earnings pending"
    PROVIDER_SETTLED = "provider_settled", "Provider: earnings settled"
    PLATFORM_REVENUE = "platform_revenue", "Platform: revenue"
    PLATFORM_FEES = "platform_fees", "Platform: fees"
    CLEARING_STRIPE = "clearing_stripe", "Clearing: Stripe"
    CLEARING_CHAIN = "clearing_chain", "Clearing: chain deposits"
    CLEARING_PAYOUTS = "clearing_payouts", "Clearing: payouts"
    CLEARING_ADJUSTMENTS = "clearing_adjustments", "Clearing: manual adjustments"
    # The guaranteed minimum income's subsidy pool: floor top-ups are paid from it (its balance is
    # what the platform spent on them, negative), per era up to REWARD_FLOOR_POOL_USD.
    PLATFORM_SUBSIDY = "platform_subsidy", "Platform: floor subsidy"


USER_KINDS = {
    AccountKind.USER_AVAILABLE,
    AccountKind.USER_RESERVED,
    AccountKind.USER_DEBT,
    AccountKind.PROVIDER_PENDING,
    AccountKind.PROVIDER_SETTLED,
}


class LedgerAccount(models.Model):
    kind = models.CharField(max_length=24, choices=AccountKind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    # Sub-account key for clearing accounts (e.g. a chain id); "" otherwise.
    key = models.CharField(max_length=40, blank=True, default="")
    # Cached sum of entries, updated in the same transaction as the entries under a row lock.
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "user", "key"], name="ledgeraccount_unique_owner"),
            models.UniqueConstraint(
                fields=["kind", "key"], condition=Q(user__isnull=True), name="ledgeraccount_unique_system"
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["user_available", "user_reserved"]) | Q(balance__gte=0),
                name="ledgeraccount_user_funds_not_negative",
            ),
            models.CheckConstraint(
                condition=~Q(kind="user_debt") | Q(balance__lte=0), name="ledgeraccount_debt_not_positive"
            ),
        ]

    def __str__(self) -> str:
        owner = self.user.email if self.user_id else "platform"
        return f"{self.get_kind_display()} [{owner}{':' + self.key if self.key else ''}]"


class TransactionKind(models.TextChoices):
    TOPUP = "topup", "Top-up"
    HOLD_PLACE = "hold_place", "Hold placed"
    HOLD_CAPTURE = "hold_capture", "Usage charged"
    HOLD_RELEASE = "hold_release", "Hold released"
    HOLD_SWAP = "hold_swap", "Hold swapped"
    SETTLEMENT = "settlement", "Earnings settled"
    REFUND = "refund", "Refund"
    DISPUTE = "dispute", "Dispute lost"
    ADJUSTMENT = "adjustment", "Manual adjustment"
    REVERSAL = "reversal", "Reversal"
    PAYOUT = "payout", "Payout"
    FLOOR_TOPUP = "floor_topup", "Floor top-up"


class LedgerTransaction(models.Model):
    kind = models.CharField(max_length=20, choices=TransactionKind.choices)
    # Why: the object that caused it, e.g. ("stripe_event", "evt_123"), ("lease", "42").
    reference_type = models.CharField(max_length=40)
    reference_id = models.CharField(max_length=100)
    # At most one transaction per (kind, idempotency key): retries and duplicate events are no-ops.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    memo = models.CharField(max_length=300, blank=True)
    reverses = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["reference_type", "reference_id"], name="ledgertxn_reference")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()} ({self.reference_type}:{self.reference_id})"


class LedgerEntry(models.Model):
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    amount = models.BigIntegerField(help_text="micro-USD; entries of one transaction sum to zero")

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["account", "transaction"], name="ledgerentry_account_txn")]
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="ledgerentry_amount_not_zero")]

    def __str__(self) -> str:
        return f"Entry #{self.pk}: {format_usd(self.amount, places=6)} on account #{self.account_id}"


class Hold(models.Model):
    """Credits reserved for a purpose (a deployment's worst case) until captured or released."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="holds")
    reference_type = models.CharField(max_length=40)
    reference_id = models.CharField(max_length=100)
    amount = models.BigIntegerField(help_text="micro-USD placed")
    captured = models.BigIntegerField(default=0)
    released = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(condition=Q(captured__gte=0, released__gte=0), name="hold_parts_not_negative"),
            models.CheckConstraint(
                condition=Q(captured__lte=models.F("amount") - models.F("released")), name="hold_not_overdrawn"
            ),
            models.UniqueConstraint(fields=["reference_type", "reference_id"], name="hold_unique_reference"),
        ]

    def __str__(self) -> str:
        amount = format_usd(self.amount, places=6)
        return f"Hold #{self.pk}: {amount} for {self.reference_type} {self.reference_id} ({self.status})"

    @property
    def remaining(self) -> int:
        return self.amount - self.captured - self.released


class UsageMeter(models.Model):
    """Per-second metering of one rental at a locked hourly price, settled from its hold.

    The charge for [started_at, t] is floor(price_per_hour * seconds / 3600), computed from the
    start each time, so rounding never accumulates across settlements.
    """

    class Mode(models.TextChoices):
        HOURLY = "hourly", "Hourly, accrued per second"
        MONTHLY = "monthly", "Monthly reservation, charged up front"

    hold = models.OneToOneField(Hold, on_delete=models.PROTECT, related_name="meter")
    renter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="meters")
    payee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reference_type = models.CharField(max_length=40, default="lease")
    reference_id = models.CharField(max_length=100)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.HOURLY)
    price_per_hour = models.BigIntegerField(help_text="micro-USD, locked when the rental starts")
    # Monthly reservations: the discounted price of the month, charged up front from the hold
    # and earned evenly over 730 hours; what is unearned at an early close goes back (pro rata).
    reservation_total = models.BigIntegerField(null=True, blank=True)
    fee_rate = models.DecimalField(max_digits=6, decimal_places=4)
    started_at = models.DateTimeField()
    # Time not billed (downtime the renter is not charged for), in whole seconds.
    excluded_seconds = models.PositiveBigIntegerField(default=0)
    # Set while the rental's node is silent (its last heartbeat): nothing accrues after it until
    # `meter_resume`, which moves the paused time into `excluded_seconds`.
    paused_at = models.DateTimeField(null=True, blank=True)
    charged = models.BigIntegerField(default=0, help_text="micro-USD captured so far")
    settled_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    low_balance_warned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["closed_at", "settled_at"], name="meter_open_settled")]
        constraints = [
            models.CheckConstraint(condition=Q(price_per_hour__gte=0), name="meter_price_not_negative"),
            models.UniqueConstraint(fields=["reference_type", "reference_id"], name="meter_unique_reference"),
        ]

    def __str__(self) -> str:
        price = format_usd(self.price_per_hour, places=6)
        return f"Meter #{self.pk}: {self.reference_type} {self.reference_id} at {price}/h"


class TopUp(models.Model):
    """A card top-up. Credits are granted only by the verified Stripe webhook."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for payment"
        SUCCEEDED = "succeeded", "Paid"
        FAILED = "failed", "Failed"
        REFUNDED = "refunded", "Refunded"
        DISPUTED = "disputed", "Disputed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="topups")
    amount = models.BigIntegerField(help_text="micro-USD")
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    stripe_payment_intent_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    credit = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    failure_message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive")]

    def __str__(self) -> str:
        return f"Top-up #{self.pk}: {format_usd(self.amount)} ({self.status})"


class StripeEvent(models.Model):
    """A verified webhook event, stored raw before it is processed (once)."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (type not handled)"
        FAILED = "failed", "Failed"
        INVALID = "invalid", "Invalid (values Stripe never sends; not processed again)"

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    stripe_created = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} ({self.status})"


class PayoutRequest(models.Model):
    """A provider asks for settled earnings to be paid out on an EVM chain (billing.payouts).

    Requested above PAYOUT_APPROVAL_THRESHOLD_USD it waits for an admin (`needs_approval`), else it
    is approved at once. The payout pass then quotes the token's rate, stores it with the amount in
    base units and records the transfer (chain.sender, `chain_transaction`) in one database
    transaction: sending. Mined: paid, with the ledger transaction (settled earnings → payouts
    clearing). Reverted: failed with the reason, nothing posted. Rows from before the chain fields
    existed keep them empty.
    """

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        APPROVED = "approved", "Approved"
        SENDING = "sending", "Sending"
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payout_requests")
    amount = models.BigIntegerField(help_text="micro-USD")
    destination = models.CharField(max_length=100, help_text="The linked payout address (EVM)")
    wallet_link = models.ForeignKey(
        "accounts.WalletLink",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The signed link that proved the destination",
    )
    chain = models.ForeignKey("chain.Chain", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    token = models.ForeignKey(
        "chain.ChainToken",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The chain's native coin or $SPON",
    )
    token_symbol = models.CharField(max_length=10, blank=True, help_text="As requested (the token row may change)")
    usd_rate = models.DecimalField(
        max_digits=30, decimal_places=12, null=True, blank=True, help_text="USD per whole token, when recorded"
    )
    rate_at = models.DateTimeField(null=True, blank=True, help_text="The time of the rate used")
    token_amount = BaseUnitsField(null=True, blank=True, help_text="base units sent")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED)
    needs_approval = models.BooleanField(default=False, help_text="Above the approval threshold when requested")
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    chain_transaction = models.OneToOneField(
        "chain.ChainTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    ledger_transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    waiting_reason = models.CharField(max_length=300, blank=True, help_text="Why it is not sent yet")
    failure_reason = models.CharField(max_length=500, blank=True, help_text="Why it failed or was rejected")
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_positive"),
            models.CheckConstraint(
                condition=~Q(status="sending") | Q(chain_transaction__isnull=False), name="payout_sending_has_chain_tx"
            ),
        ]
        indexes = [models.Index(fields=["status", "id"], name="payout_status")]

    def __str__(self) -> str:
        return f"Payout #{self.pk}: {format_usd(self.amount, places=6)} to {self.destination} ({self.status})"

    @property
    def waits_for_approval(self) -> bool:
        return self.status == self.Status.REQUESTED and self.needs_approval


class BalanceAlert(models.Model):
    """A user's low-balance alerts (billing.alerts): thresholds of available credits, and where to
    tell them. `fired` lists the thresholds the balance is below and has been told about: a
    threshold fires once when the balance crosses it downward and is re-armed when the balance is
    back at or above it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="balance_alert")
    thresholds = models.JSONField(default=list, help_text="micro-USD, descending")
    email_enabled = models.BooleanField(default=True)
    webhook_url = models.CharField(max_length=500, blank=True)
    # Signs the webhook (HMAC-SHA256); generated here, shown to the user once.
    webhook_secret = models.CharField(max_length=100, blank=True)
    fired = models.JSONField(default=list, help_text="micro-USD thresholds below which the balance was already told")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Balance alerts of {self.user}"


class BalanceAlertEvent(models.Model):
    """One crossing of a threshold downward: what the user is told (once, by each channel)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="balance_alert_events")
    threshold = models.BigIntegerField(help_text="micro-USD")
    available = models.BigIntegerField(help_text="micro-USD available when the crossing was seen")
    spend_per_hour = models.BigIntegerField(help_text="micro-USD per hour at the time")
    runway_seconds = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="balancealert_event_user")]

    def __str__(self) -> str:
        return f"Low balance #{self.pk}: {format_usd(self.available)} < {format_usd(self.threshold)}"


class BalanceAlertDelivery(models.Model):
    """Telling one crossing by one channel, with its retries (webhooks back off)."""

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Sending"
        SENT = "sent", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    event = models.ForeignKey(BalanceAlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    target = models.CharField(max_length=500, help_text="The e-mail address or webhook URL at the time")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "channel"], name="balancealert_delivery_once")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="balancealert_delivery_due")]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} of alert #{self.event_id} ({self.status})"


class AutoReload(models.Model):
    """A user's card auto-reload (billing.autoreload): when available credits fall below
    `threshold`, or would not cover the next hour of the running rentals, `amount` is charged
    off-session to the saved card."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="auto_reload")
    enabled = models.BooleanField(default=False)
    threshold = models.BigIntegerField(default=10_000_000, help_text="micro-USD")
    amount = models.BigIntegerField(default=20_000_000, help_text="micro-USD, at least AUTORELOAD_MIN_USD")
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    stripe_payment_method_id = models.CharField(max_length=100, blank=True)
    card_label = models.CharField(max_length=60, blank=True, help_text='e.g. "visa ending 4242"')
    setup_intent_id = models.CharField(max_length=100, blank=True, help_text="The card being saved")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0, threshold__gte=0), name="autoreload_amounts_positive")
        ]

    def __str__(self) -> str:
        return f"Auto-reload of {self.user} ({'on' if self.enabled else 'off'})"


class AutoReloadAttempt(models.Model):
    """One off-session charge of the saved card. Its id is in the Stripe idempotency key, so a
    retry after a lost answer cannot charge twice; at most one attempt per user is in flight."""

    class Status(models.TextChoices):
        PROCESSING = "processing", "Charging the card"
        SUCCEEDED = "succeeded", "Credited"
        FAILED = "failed", "Failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="auto_reloads")
    amount = models.BigIntegerField(help_text="micro-USD")
    reason = models.CharField(max_length=200, help_text="Why it was started")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PROCESSING)
    topup = models.OneToOneField(TopUp, on_delete=models.PROTECT, related_name="auto_reload")
    stripe_payment_intent_id = models.CharField(max_length=100, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    tries = models.PositiveIntegerField(default=0, help_text="Calls to Stripe under the attempt's one key")
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="autoreload_attempt_amount_positive"),
            models.UniqueConstraint(fields=["user"], condition=Q(status="processing"), name="autoreload_one_in_flight"),
        ]

    def __str__(self) -> str:
        return f"Auto-reload #{self.pk}: {format_usd(self.amount)} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        return f"autoreload:{self.user_id}:{self.id}"
