"""providers.rewards: the era reward's parameters, the era's receipts, a challenge's shortfall and
the earnings calculator. Expected figures are worked out by hand from protocol-facts.md; the
receipts are checked with spheron_sdk.rewards, the function a provider runs. No database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spheron_sdk import rewards as sdk

from providers.liveness import challenge_evaluate
from providers.models import GPU_TIER_MULTIPLIERS
from providers.rewards import (
    ChallengeInput,
    LeaseSpan,
    NodeEraInputs,
    RewardParams,
    challenge_shortfall,
    earnings_estimate,
    era_receipts,
    node_receipt,
    params_from_settings,
    spon_per_point,
)

START = datetime(2026, 12, 3, tzinfo=UTC)
ERA = (START, START + timedelta(days=1))
SPON = 10**18


def h(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def rtx4090(node_id: int = 1, **overrides) -> NodeEraInputs:
    fields = {
        "node_id": node_id,
        "window": ERA,
        "unit_kind": "gpu",
        "unit_count": 1,
        "tier": "medium-1",
        "trust_tier": 6,
    }
    return NodeEraInputs(**(fields | overrides))


def shortfall(**values) -> dict[str, Decimal]:
    return {name: Decimal(values.get(name, "0")) for name in sdk.RESOURCES}


# --- Parameters ---------------------------------------------------------------------------------


def test_default_parameters_are_protocol_facts_and_ours():
    params = RewardParams()
    assert params.k_per_gpu == 500 and params.k_per_cpu_core == 25
    assert params.uptime_threshold == Decimal("0.5")
    assert dict(params.weights(has_gpu=True)) == shortfall(cpu="0.2", ram="0.1", storage="0.1", gpu="0.6")
    assert dict(params.weights(has_gpu=False)) == shortfall(cpu="0.5", ram="0.25", storage="0.25")
    assert [params.trust_multipliers[t] for t in range(1, 8)] == [Decimal(v) for v in "2 1.7 1.5 1.2 1.1 1 0".split()]
    assert params.utilization_bonus == Decimal("0.5")
    assert params.era_emission_base_units == 100_000 * SPON
    assert params.tier_multipliers["medium-1"] == 1 and params.tier_multipliers["ultra-high-2"] == 12
    assert dict(params.tier_multipliers) == {str(k): v for k, v in GPU_TIER_MULTIPLIERS.items()}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"weights_gpu": {"cpu": "0.5", "ram": "0.1", "storage": "0.1", "gpu": "0.6"}}, "summing to 1"),
        ({"weights_cpu": {"cpu": "0.4", "ram": "0.25", "storage": "0.25", "gpu": "0.1"}}, "no GPU weight"),
        ({"trust_multipliers": {1: "2"}}, "each tier 1–7"),
        ({"uptime_threshold": Decimal("0.5000001")}, "at most 6 decimals"),
        ({"utilization_bonus": Decimal("-0.1")}, "non-negative"),
        ({"era_emission_spon": Decimal("1e-19")}, "at most 18 decimals"),
    ],
)
def test_bad_parameters_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        RewardParams(**overrides)


def test_params_from_settings_reads_each_setting_with_defaults(settings):
    assert params_from_settings() == RewardParams(platform_fee_fizz=settings.PLATFORM_FEE_FIZZ)
    settings.REWARD_K_PER_GPU = 20
    settings.REWARD_UTILIZATION_BONUS = Decimal("0.25")
    settings.REWARD_ERA_EMISSION_SPON = Decimal("2500.5")
    settings.REWARD_WEIGHTS_CPU = {"cpu": "0.6", "ram": "0.2", "storage": "0.2"}
    settings.REWARD_TRUST_MULTIPLIERS = {tier: "1" for tier in range(1, 8)}
    settings.PLATFORM_FEE_FIZZ = Decimal("0.05")
    params = params_from_settings()
    assert params.k_per_gpu == 20 and params.utilization_bonus == Decimal("0.25")
    assert params.era_emission_base_units == 2500 * SPON + SPON // 2
    assert params.weights(has_gpu=False)["cpu"] == Decimal("0.6") and params.weights(has_gpu=False)["gpu"] == 0
    assert params.trust_multipliers[7] == 1 and params.platform_fee_fizz == Decimal("0.05")


# --- Receipts of an era -------------------------------------------------------------------------


def test_worked_example_500_times_0_855_is_427_5_and_takes_the_whole_emission():
    challenges = [
        ChallengeInput(id="a", at=h(1), status="failed", shortfall=shortfall(gpu="0.5", cpu="0.5", ram="0.3")),
        ChallengeInput(id="b", at=h(2), status="failed", shortfall=shortfall(ram="1", storage="0.5")),
        ChallengeInput(id="c", at=h(3), status="passed", shortfall=shortfall()),
    ]
    [receipt] = era_receipts([rtx4090(challenges=challenges, challenges_passed=1)], RewardParams(), era=ERA)
    assert receipt["base"]["units"] == [
        {"kind": "gpu", "count": 1, "tier": "medium-1", "multiplier": "1", "k": "500", "points": "500"}
    ]
    assert receipt["liveness"]["passed"] == 2  # the passed one listed, and the one counted
    assert [c["id"] for c in receipt["liveness"]["challenges"]] == ["a", "b"]
    assert receipt["liveness"]["weighted_shortfall"] == "0.145"  # (0.43 + 0.15 + 0 + 0) / 4
    assert receipt["points"] == "427.5"
    assert receipt["spon"]["amount"] == str(100_000 * SPON)
    assert sdk.receipt_check(json.loads(json.dumps(receipt))) == []


def test_an_era_of_several_nodes_shares_the_emission_pro_rata():
    nodes = [
        rtx4090(1),  # 500
        rtx4090(2, trust_tier=4, leases=[LeaseSpan(id=7, start=h(0), end=h(12), units=1)]),  # 500 × 1.2 × 1.25 = 750
        rtx4090(3, trust_tier=7),  # new node: 0
        rtx4090(4, unit_kind="cpu", unit_count=32, tier="cpu-general"),  # 32 × 0.5 × 25 = 400
        rtx4090(5, outages=[(h(0), h(12.5))]),  # 47.9% uptime: 0
    ]
    receipts = era_receipts(nodes, RewardParams(era_emission_spon=Decimal(1650)), era=ERA)
    assert [r["points"] for r in receipts] == ["500", "750", "0", "400", "0"]
    assert [r["spon"]["amount"] for r in receipts] == [str(500 * SPON), str(750 * SPON), "0", str(400 * SPON), "0"]
    assert receipts[3]["liveness"]["weights"] == {"cpu": "0.5", "ram": "0.25", "storage": "0.25", "gpu": "0"}
    assert sdk.era_check(receipts) == []


def test_uptime_factor_at_49_99_and_50_percent():
    down_4999 = (h(0), h(0) + timedelta(seconds=43208.64))  # 50.01% of the era down
    below, exactly = era_receipts(
        [rtx4090(1, outages=[down_4999]), rtx4090(2, outages=[(h(0), h(12))])], RewardParams(), era=ERA
    )
    assert (below["uptime"]["uptime"], below["uptime"]["factor"], below["points"]) == ("0.4999", "0", "0")
    assert (exactly["uptime"]["uptime"], exactly["uptime"]["factor"], exactly["points"]) == ("0.5", "1", "500")
    assert exactly["spon"]["amount"] == str(100_000 * SPON)


def test_a_node_registered_mid_era_is_judged_on_its_window():
    [r] = era_receipts([rtx4090(window=(h(18), h(24)), outages=[(h(18), h(20))])], RewardParams(), era=ERA)
    assert r["uptime"]["counted_seconds"] == "21600" and r["uptime"]["uptime"] == "0.666666"
    with pytest.raises(ValueError, match="not inside the era"):
        era_receipts([rtx4090(window=(h(-1), h(24)))], RewardParams(), era=ERA)


def test_forfeited_era_and_tier_7_earn_nothing():
    receipts = era_receipts(
        [rtx4090(1, forfeited=True, forfeit_reason="spoofed resources"), rtx4090(2, trust_tier=7), rtx4090(3)],
        RewardParams(),
        era=ERA,
    )
    assert [r["spon"]["amount"] for r in receipts] == ["0", "0", str(100_000 * SPON)]
    assert receipts[0]["forfeit"] == {"forfeited": True, "reason": "spoofed resources", "factor": "0"}


def test_no_points_no_spon_issued():
    receipts = era_receipts([rtx4090(1, trust_tier=7)], RewardParams(), era=ERA)
    assert receipts[0]["spon"]["amount"] == "0" and receipts[0]["era"]["total_points"] == "0"
    assert era_receipts([], RewardParams(), era=ERA) == []


# --- One challenge's shortfall ------------------------------------------------------------------

EXPECTED = {
    "agent_version": "0.1.0",
    "cpu_cores": 8,
    "memory_gb": 32,
    "memory_free_gb": 32,
    "storage_free_gb": 400,
    "gpu_kind": "gpu",
    "gpu_model": "rtx4090",
    "gpu_count": 1,
    "gpus_free": 1,
    "vram_gb": 24,
}
GOOD_GPU = {"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564, "memory_free_mib": 24000}
MEASURED = {
    "agent_version": "0.1.0",
    "cpu_cores": 8,
    "memory_gb": 32,
    "memory_available_gb": 30,
    "storage_free_gb": 390,
    "gpus": [GOOD_GPU],
}
TOLERANCE = Decimal("0.75")


@pytest.mark.parametrize(
    ("status", "measured", "expected_shortfall"),
    [
        ("passed", MEASURED, shortfall()),
        ("missed", {}, shortfall(cpu="1", ram="1", storage="1", gpu="1")),
        ("failed", MEASURED | {"cpu_cores": 6}, shortfall(cpu="0.25")),
        ("failed", MEASURED | {"memory_available_gb": 10}, shortfall(ram="0.6875")),  # 1 − 10/32
        ("failed", MEASURED | {"memory_gb": 16, "memory_available_gb": 16}, shortfall(ram="0.5")),
        ("failed", MEASURED | {"storage_free_gb": 100}, shortfall(storage="0.75")),
        ("failed", MEASURED | {"gpus": []}, shortfall(gpu="1")),
        ("failed", MEASURED | {"gpus": [GOOD_GPU | {"memory_free_mib": 100}]}, shortfall(gpu="1")),
        ("failed", MEASURED | {"gpus": [GOOD_GPU | {"name": "NVIDIA GeForce RTX 3090"}]}, shortfall(gpu="1")),
        ("failed", MEASURED | {"agent_version": "0.0.9"}, shortfall(cpu="1", ram="1", storage="1", gpu="1")),
        ("failed", MEASURED | {"cpu_cores": 7, "storage_free_gb": 200}, shortfall(cpu="0.125", storage="0.5")),
    ],
)
def test_challenge_shortfall_per_resource(status, measured, expected_shortfall, settings):
    got = challenge_shortfall(status=status, expected=EXPECTED, measured=measured, tolerance=TOLERANCE)
    assert got == expected_shortfall
    if status == "failed":  # liveness failed this very answer
        settings.NODE_CHALLENGE_TOLERANCE = TOLERANCE
        assert challenge_evaluate(EXPECTED, measured)[0]


def test_a_missed_challenge_of_a_cpu_node_has_no_gpu_shortfall():
    cpu_node = EXPECTED | {"gpu_kind": "cpu", "gpu_count": 0, "gpus_free": 0}
    got = challenge_shortfall(status="missed", expected=cpu_node, measured={}, tolerance=TOLERANCE)
    assert got == shortfall(cpu="1", ram="1", storage="1")


# --- The earnings calculator --------------------------------------------------------------------


def test_an_rtx4090_in_tier_4_at_95_percent_uptime_and_60_percent_utilization():
    estimate = earnings_estimate(
        tier="medium-1",
        trust_tier=4,
        uptime=Decimal("0.95"),
        utilization=Decimal("0.6"),
        spon_per_point=Decimal("0.1"),
        spon_usd_rate=Decimal("0.05"),
        params=RewardParams(platform_fee_fizz=Decimal("0.07")),
    )
    # 500 × 1 (≥ 50% uptime) × 1 (no shortfall) × 1.2 × (1 + 0.5 × 0.6) = 780 points an era.
    assert estimate["points_per_era"] == Decimal(780)
    assert sdk.receipt_check(estimate["receipt"]) == []
    # 730 h / 24 = 30.416… eras × 780 × 0.1 $SPON = 2,372.5 $SPON, × $0.05 = $118.625.
    assert estimate["spon_base_units"] == 2_372_500_000_000_000_000_000
    assert estimate["spon_usd_micros"] == 118_625_000
    # $0.175/h × 730 h × 0.95 × 0.6 = $72.8175 gross; 7% fee $5.097225; net $67.720275.
    assert estimate["rental_price_per_hour_micros"] == 175_000
    assert estimate["rental_gross_micros"] == 72_817_500
    assert estimate["rental_fee_micros"] == 5_097_225
    assert estimate["rental_net_micros"] == 67_720_275
    assert estimate["total_usd_micros"] == 67_720_275 + 118_625_000


def test_the_estimate_follows_the_formula_below_the_threshold_and_with_a_shortfall():
    common = {"tier": "medium-1", "spon_per_point": Decimal(1), "spon_usd_rate": Decimal(1), "params": RewardParams()}
    low = earnings_estimate(trust_tier=6, uptime=Decimal("0.4999"), utilization=Decimal(0), **common)
    assert low["points_per_era"] == 0 and low["spon_usd_micros"] == 0
    short = earnings_estimate(
        trust_tier=6, uptime=Decimal(1), utilization=Decimal(0), shortfall=Decimal("0.145"), **common
    )
    assert short["points_per_era"] == Decimal("427.5")
    cpu = earnings_estimate(
        trust_tier=6,
        uptime=Decimal(1),
        utilization=Decimal(1),
        unit_kind="cpu",
        unit_count=16,
        **common | {"tier": "cpu-hpc"},
    )
    assert cpu["points_per_era"] == Decimal(600)  # 16 × 1 × 25 × 1.5
    assert cpu["rental_price_per_hour_micros"] == 16_438  # 16 × $0.75 / 730 h, rounded
    with pytest.raises(ValueError, match="uptime"):
        earnings_estimate(trust_tier=6, uptime=Decimal("1.1"), utilization=Decimal(0), **common)


def test_spon_per_point_of_an_era():
    assert spon_per_point(emission_base_units=100_000 * SPON, total_points=Decimal(1_000_000)) == Decimal("0.1")
    assert spon_per_point(emission_base_units=100_000 * SPON, total_points=Decimal(0)) == 0


# --- Property: random eras ----------------------------------------------------------------------

PROPERTY = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
moment = st.integers(min_value=0, max_value=24 * 3600).map(lambda s: START + timedelta(seconds=s))
pair = st.tuples(moment, moment).map(lambda p: (min(p), max(p)))
short_value = st.sampled_from(["0", "0", "0.2", "0.5", "0.333333", "1"])


@st.composite
def node_inputs(draw, node_id: int) -> NodeEraInputs:
    gpu = draw(st.booleans())
    count = draw(st.integers(1, 8 if gpu else 64))
    tier = draw(st.sampled_from([t for t in GPU_TIER_MULTIPLIERS if t.startswith("cpu") != gpu]))
    window = draw(st.sampled_from([ERA, (h(6), h(24)), (h(23), h(24))]))
    return NodeEraInputs(
        node_id=node_id,
        window=window,
        unit_kind="gpu" if gpu else "cpu",
        unit_count=count,
        tier=str(tier),
        trust_tier=draw(st.integers(1, 7)),
        outages=draw(st.lists(pair, max_size=4)),
        excused=draw(st.lists(pair, max_size=1)),
        challenges=[
            ChallengeInput(
                id=str(i),
                at=h(1),
                status="failed",
                shortfall={
                    name: Decimal(draw(short_value)) if gpu or name != "gpu" else Decimal(0) for name in sdk.RESOURCES
                },
            )
            for i in range(draw(st.integers(0, 4)))
        ],
        challenges_passed=draw(st.integers(0, 96)),
        leases=[
            LeaseSpan(id=i, start=s, end=e, units=draw(st.integers(1, count)))
            for i, (s, e) in enumerate(draw(st.lists(pair, max_size=3)))
        ],
        forfeited=draw(st.integers(0, 9)) == 0,
    )


@st.composite
def random_era(draw) -> tuple[list[NodeEraInputs], RewardParams]:
    nodes = [
        draw(node_inputs(node_id))
        for node_id in draw(st.lists(st.integers(1, 10**6), min_size=1, max_size=10, unique=True))
    ]
    params = RewardParams(
        era_emission_spon=Decimal(draw(st.integers(0, 10**27))).scaleb(-18),  # any number of base units
        utilization_bonus=Decimal(draw(st.sampled_from(["0", "0.5", "1.25"]))),
    )
    return nodes, params


@PROPERTY
@given(random_era())
def test_random_eras_issue_the_emission_exactly_and_every_receipt_recomputes(drawn):
    nodes, params = drawn
    receipts = json.loads(json.dumps(era_receipts(nodes, params, era=ERA)))
    amounts = [int(r["spon"]["amount"]) for r in receipts]
    assert all(amount >= 0 for amount in amounts)
    points = [Decimal(r["points"]) for r in receipts]
    assert sum(amounts) == (params.era_emission_base_units if sum(points) > 0 else 0)
    for receipt, node in zip(receipts, nodes, strict=True):
        assert sdk.receipt_check(receipt) == []
        assert sdk.reward_points(receipt) == Decimal(receipt["points"])
        # The receipt is the node's own figure: node_receipt alone gives the same points.
        assert node_receipt(node, params, era=ERA)["points"] == receipt["points"]
    assert sdk.era_check(receipts) == []
