"""Shapes of the API's main answers, for type checkers (the client returns the decoded JSON as is).

Money is an exact decimal string in USD (`"0.500000"`) with its integer micro-USD twin (`*_micros`);
times are ISO 8601 strings. GET /api/v1/openapi.json is the full contract.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Offer(TypedDict):
    node_id: int
    provider: str
    gpu_model: str
    gpu_kind: str
    unit: str
    gpu_count: int
    vram_gb: int
    gpu_tier: str
    cpu_cores: int
    memory_gb: int
    storage_gb: int
    bandwidth_mbps: int
    region: str
    mode: str
    price_per_hour: str
    price_per_gpu_hour: str
    price_per_vram_gb_hour: str
    uptime_1d: float
    uptime_7d: float
    uptime_30d: float
    trust_tier: int
    available_gpus: int


class Estimate(TypedDict):
    max_price_per_hour: str
    max_price_per_hour_micros: int
    max_total: str | None
    max_total_micros: int | None
    hold: str
    hold_micros: int
    hold_hours: int


class DeploymentCreated(TypedDict):
    id: int
    status: str
    estimate: Estimate
    url: str


class Validation(TypedDict):
    valid: bool
    errors: list[dict[str, Any]]
    estimate: Estimate | None
    available: str | None
    available_micros: int | None
    enough_credits: bool | None


class Deployment(TypedDict):
    id: int
    name: str
    status: str
    mode: str
    failover: bool
    duration_seconds: int | None
    created_at: str
    started_at: str | None
    ends_at: str | None
    closed_at: str | None
    close_reason: str
    failure_reason: str
    max_price_per_hour: str
    max_price_per_hour_micros: int
    cost_so_far: str
    cost_so_far_micros: int
    lease: dict[str, Any] | None
    match: dict[str, Any] | None
    spec: dict[str, Any]
    url: str


class DeploymentEvent(TypedDict):
    id: int
    kind: str
    at: str
    message: str
    lease_id: int | None


class LogLine(TypedDict):
    id: int
    lease_id: int
    at: str
    stream: str
    line: str


class LogPage(TypedDict):
    lines: list[LogLine]
    next_after: int | None
    more: bool


class Balance(TypedDict):
    available: str
    available_micros: int
    reserved: str
    reserved_micros: int
    debt: str
    debt_micros: int


class AlertDelivery(TypedDict):
    id: int
    channel: str  # "email" or "webhook"
    target: str
    status: str  # pending, sending, sent, failed
    attempts: int
    next_attempt_at: str | None
    last_attempt_at: str | None
    response_status: int | None
    last_error: str
    delivered_at: str | None


class AlertEvent(TypedDict):
    id: str  # "balert_12", as in the webhook body
    created_at: str
    threshold: str
    threshold_micros: int
    available: str
    available_micros: int
    spend_per_hour: str
    spend_per_hour_micros: int
    runway_seconds: int | None
    deliveries: list[AlertDelivery]


class Alerts(TypedDict):
    thresholds: list[str]
    thresholds_micros: list[int]
    fired_micros: list[int]
    email_enabled: bool
    email: str
    webhook_url: str
    webhook_secret_set: bool
    webhook_secret: str | None  # only in the answer that created it
    signature_header: str
    events: list[AlertEvent]
    page_url: str


class AutoReloadAttempt(TypedDict):
    id: int
    status: str  # processing, succeeded, failed
    amount: str
    amount_micros: int
    reason: str
    failure_message: str
    topup_id: int
    created_at: str
    finished_at: str | None


class AutoReload(TypedDict):
    enabled: bool
    threshold: str
    threshold_micros: int
    amount: str
    amount_micros: int
    minimum_amount: str
    minimum_amount_micros: int
    card_saved: bool
    card_label: str
    card_payments_available: bool
    card_setup_url: str  # saving a card needs Stripe.js: this page in a browser
    attempts: list[AutoReloadAttempt]
    attempt: AutoReloadAttempt | None  # after an update that reloaded at once


class StatementMonth(TypedDict):
    year: int
    month: int
    period: str  # "2026-03": statement(period) has its statement
    name: str  # "March 2026"
    number: str  # "SPH-12-202603"
    topups: str
    topups_micros: int
    usage: str  # charged, as a positive amount
    usage_micros: int
    other: str  # refunds, adjustments, disputes (signed)
    other_micros: int
    net: str  # topups - usage + other
    net_micros: int
    current: bool  # the month still running


class StatementLine(TypedDict):
    description: str
    reference: str  # "lease 12"
    date: str
    count: int  # usage: the charges on one rental
    amount: str  # signed: credits positive, charges negative
    amount_micros: int


class StatementGroup(TypedDict):
    kind: str  # topup, hold_capture, refund, adjustment, ...
    label: str
    total: str
    total_micros: int
    lines: list[StatementLine]


class Statement(TypedDict):
    number: str
    period: str
    name: str
    period_start: str  # YYYY-MM-DD
    period_end: str  # inclusive
    is_final: bool  # false while the month runs
    opening: str
    opening_micros: int
    closing: str  # opening + total
    closing_micros: int
    credits: str
    credits_micros: int
    charges: str  # negative
    charges_micros: int
    total: str  # credits + charges
    total_micros: int
    groups: list[StatementGroup]
    page_url: str  # the printable page


class Redeployed(DeploymentCreated):
    redeployed_from: int  # the pinned deployment this one replaces (now closed)


# Provider actions (/provider/prices, /provider/payouts, /provider/slashes). $SPON amounts are
# base-unit strings (18 decimals) with a whole-token twin (`*_spon`).


class GpuPrice(TypedDict):
    gpu_model: str  # the model's slug
    name: str
    kind: str  # gpu, apple or cpu
    price_per_hour: str | None  # None: you do not offer the model
    price_per_hour_micros: int | None
    fizz_price_per_hour: str  # the Fizz price, for reference
    fizz_price_per_hour_micros: int


class UnitPrice(TypedDict):
    price: str  # USD per unit-month (a core, or a GB)
    price_micros: int
    fizz_price: str
    fizz_price_micros: int


class ProviderPrices(TypedDict):
    gpu_prices: list[GpuPrice]  # every model of the catalog, in its order
    cpu_per_core_month: UnitPrice
    memory_per_gb_month: UnitPrice
    storage_per_gb_month: UnitPrice
    offered: int  # how many GPU models you price
    applies_to: str


class Payout(TypedDict):
    id: int
    created_at: str
    updated_at: str
    amount: str
    amount_micros: int
    status: str  # requested, approved, sending, paid, failed, rejected
    needs_approval: bool
    approved_at: str | None
    chain: str | None
    chain_name: str | None
    chain_id: int | None
    token_symbol: str
    token_amount: str | None  # base units; None until recorded for sending
    token_amount_text: str  # "0.0041 ETH"; "" until recorded
    usd_rate: str | None
    rate_at: str | None
    destination: str
    tx_hash: str
    tx_url: str
    tx_status: str | None
    waiting_reason: str
    failure_reason: str
    paid_at: str | None


class PayoutBalance(TypedDict):
    pending: str
    pending_micros: int
    settled: str
    settled_micros: int
    requested: str
    requested_micros: int
    payable: str  # what you may request now: settled less requested
    payable_micros: int
    minimum: str
    minimum_micros: int
    approval_threshold: str  # above it an admin approves the payout first
    approval_threshold_micros: int
    payout_address: str | None  # None: link one first (/account/wallets/)


class PayoutPage(TypedDict):
    balance: PayoutBalance
    items: list[Payout]
    next_cursor: str | None


class SlashAppeal(TypedDict):
    id: int
    status: str  # open, upheld, dismissed
    text: str
    created_at: str
    answer: str
    decided_at: str | None
    refund_status: str  # waiting, sending, returned, failed, restored, nothing; "" before
    refund_amount: str | None
    refund_amount_spon: str | None
    refund_tx_hash: str
    refund_tx_url: str
    refund_note: str
    refunded_at: str | None


class Slash(TypedDict):
    id: int
    created_at: str
    amount: str
    amount_spon: str
    amount_slashed: str | None
    amount_slashed_spon: str | None
    status: str  # decided, sending, applied, off_chain, failed
    failure_reason: str
    applied_at: str | None
    reason: str
    reference: str
    reason_hash: str
    evidence_type: str  # "lease", "challenge" or ""
    evidence_id: str
    node_id: int | None
    address: str
    chain_id: int | None
    tx_hash: str
    tx_url: str
    tx_status: str | None
    can_appeal: bool
    appeal: SlashAppeal | None
    url: str  # the slash's page, with its evidence


class SlashEvidence(TypedDict):
    kind: str
    node_id: int | None
    node_name: str | None
    lease_meter: dict[str, Any] | None
    node_events: list[dict[str, Any]]
    era_start: str | None
    era_end: str | None
    failed_challenges: list[dict[str, Any]]


class SlashDetail(Slash):
    evidence: SlashEvidence
