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
