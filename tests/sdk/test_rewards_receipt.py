"""spheron_sdk.rewards: the era reward recomputed from a receipt alone, term by term.

Every expected figure here is worked out by hand from protocol-facts.md ("Fizz node": base points
= units × tier multiplier × k, k = 500 per GPU and 25 per CPU core; uptime factor 1 at ≥ 50%;
weights CPU 0.2 / RAM 0.1 / storage 0.1 / GPU 0.6 with a GPU, 0.5 / 0.25 / 0.25 without; trust
multipliers 2.0 … 1.0, tier 7: 0), not from the module. No Django, no database.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spheron_sdk import rewards

START = datetime(2026, 12, 3, tzinfo=UTC)
END = START + timedelta(days=1)
GPU_WEIGHTS = {"cpu": "0.2", "ram": "0.1", "storage": "0.1", "gpu": "0.6"}
CPU_WEIGHTS = {"cpu": "0.5", "ram": "0.25", "storage": "0.25", "gpu": "0"}
ZERO = {"cpu": "0", "ram": "0", "storage": "0", "gpu": "0"}


def at(hours: float) -> str:
    return rewards.iso(START + timedelta(hours=hours))


def receipt(
    *,
    units=None,
    outages=(),
    excused=(),
    challenges=(),
    passed=0,
    tier=6,
    multiplier="1.0",
    leases=(),
    capacity=1,
    bonus="0.5",
    weights=None,
    forfeited=False,
    node_id=1,
) -> dict:
    """A receipt's inputs (an RTX 4090 by default: one GPU, Medium 1, multiplier 1, k 500)."""
    units = units or [{"kind": "gpu", "count": 1, "tier": "medium-1", "multiplier": "1", "k": "500"}]
    has_gpu = any(u["kind"] == "gpu" for u in units)
    return {
        "version": 1,
        "node_id": node_id,
        "era": {"start": rewards.iso(START), "end": rewards.iso(END)},
        "base": {"units": units},
        "uptime": {
            "window": [rewards.iso(START), rewards.iso(END)],
            "outages": [list(o) for o in outages],
            "excused": [list(e) for e in excused],
            "threshold": "0.5",
        },
        "liveness": {
            "weights": weights or (GPU_WEIGHTS if has_gpu else CPU_WEIGHTS),
            "passed": passed,
            "challenges": [
                {"id": f"c{i}", "at": at(i), "status": "failed", "shortfall": ZERO | s}
                for i, s in enumerate(challenges)
            ],
        },
        "trust": {"tier": tier, "multiplier": multiplier},
        "utilization": {"capacity_units": capacity, "bonus": bonus, "leases": list(leases)},
        "forfeit": {"forfeited": forfeited, "reason": "spoofed GPU" if forfeited else ""},
    }


def built(**kwargs) -> dict:
    return rewards.receipt_build(receipt(**kwargs))


# --- The worked example: 500 × 0.855 = 427.5 ----------------------------------------------------


def test_worked_example_rtx4090_500_times_0_855_is_427_5():
    # Four challenges in the era: (GPU 0.5, CPU 0.5, RAM 0.3) → 0.3 + 0.1 + 0.03 = 0.43;
    # (RAM 1, storage 0.5) → 0.1 + 0.05 = 0.15; two passed → 0. Mean: 0.58 / 4 = 0.145.
    r = built(
        challenges=[{"gpu": "0.5", "cpu": "0.5", "ram": "0.3"}, {"ram": "1", "storage": "0.5"}],
        passed=2,
        outages=[(at(1), at(2))],
    )
    assert r["base"]["points"] == "500"
    assert r["uptime"]["uptime"] == "0.958333"  # 82,800 / 86,400 truncated
    assert r["uptime"]["factor"] == "1"
    assert [c["weighted"] for c in r["liveness"]["challenges"]] == ["0.43", "0.15"]
    assert r["liveness"]["count"] == 4
    assert r["liveness"]["weighted_shortfall"] == "0.145"
    assert r["liveness"]["factor"] == "0.855"
    assert r["trust"]["multiplier"] == "1.0"
    assert r["utilization"]["factor"] == "1"
    assert r["points"] == "427.5"
    assert rewards.reward_points(r) == Decimal("427.5")
    assert rewards.receipt_check(r) == []


def test_worked_example_in_tier_4_at_60_percent_utilization():
    # Online 24 h, leased 14.4 h of it: 0.6 → 1 + 0.5 × 0.6 = 1.3; tier 4: 1.2.
    r = built(
        challenges=[{"cpu": "0.1", "ram": "0.05", "gpu": "0.2"}],  # 0.02 + 0.005 + 0.12 = 0.145
        tier=4,
        multiplier="1.2",
        leases=[{"id": "9", "start": at(2), "end": at(16.4), "units": 1}],
    )
    assert r["utilization"]["utilization"] == "0.6"
    assert r["utilization"]["factor"] == "1.3"
    assert r["points"] == "666.9"  # 500 × 0.855 × 1.2 × 1.3


# --- Base points --------------------------------------------------------------------------------


def test_base_points_per_gpu_and_per_cpu_core():
    h100s = built(
        units=[{"kind": "gpu", "count": 8, "tier": "ultra-high-2", "multiplier": "12", "k": "500"}], capacity=8
    )
    assert h100s["base"]["points"] == "48000"  # 8 × 12 × 500
    cpu = built(
        units=[{"kind": "cpu", "count": 16, "tier": "cpu-general", "multiplier": "0.5", "k": "25"}], capacity=16
    )
    assert cpu["base"]["points"] == "200"  # 16 × 0.5 × 25
    assert cpu["points"] == "200"
    gtx = built(units=[{"kind": "gpu", "count": 1, "tier": "entry-1", "multiplier": "0.1", "k": "500"}])
    assert gtx["points"] == "50"


# --- Uptime -------------------------------------------------------------------------------------


def test_uptime_factor_is_0_at_49_99_percent_and_1_at_50_percent():
    # 49.99% online: down 50.01% of 86,400 s = 43,208.64 s.
    below = built(outages=[(rewards.iso(START), rewards.iso(START + timedelta(seconds=43208.64)))])
    assert below["uptime"]["online_seconds"] == "43191.36"
    assert below["uptime"]["uptime"] == "0.4999"
    assert below["uptime"]["factor"] == "0"
    assert below["points"] == "0"
    exactly = built(outages=[(at(0), at(12))])
    assert exactly["uptime"]["uptime"] == "0.5"
    assert exactly["uptime"]["factor"] == "1"
    assert exactly["points"] == "500"
    # One microsecond short of half: truncated to 0.499999, below the threshold.
    short = built(outages=[(rewards.iso(START), rewards.iso(START + timedelta(hours=12, microseconds=1)))])
    assert short["uptime"]["uptime"] == "0.499999"
    assert short["points"] == "0"


def test_maintenance_is_excused_and_overlapping_outages_count_once():
    # 12 h maintenance, offline 06:00–18:00 (6 h of it inside maintenance), and a challenge
    # penalty inside the offline period: counted 12 h, down 6 h → 0.5.
    r = built(outages=[(at(6), at(18)), (at(7), at(8))], excused=[(at(0), at(12))])
    assert r["uptime"]["counted_seconds"] == "43200"
    assert r["uptime"]["down_seconds"] == "21600"
    assert r["uptime"]["uptime"] == "0.5"
    assert r["uptime"]["factor"] == "1"


def test_a_node_in_maintenance_all_era_earns_nothing():
    r = built(excused=[(at(-1), at(25))])
    assert r["uptime"]["counted_seconds"] == "0"
    assert r["uptime"]["factor"] == "0"
    assert r["points"] == "0"


# --- Liveness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "with_gpu", "without_gpu"),
    [("cpu", "0.2", "0.5"), ("ram", "0.1", "0.25"), ("storage", "0.1", "0.25"), ("gpu", "0.6", None)],
)
def test_weights_with_and_without_a_gpu(resource, with_gpu, without_gpu):
    r = built(challenges=[{resource: "1"}])
    assert r["liveness"]["weighted_shortfall"] == with_gpu
    if without_gpu is not None:
        cpu = built(
            units=[{"kind": "cpu", "count": 8, "tier": "cpu-hpc", "multiplier": "1", "k": "25"}],
            capacity=8,
            challenges=[{resource: "1"}],
        )
        assert cpu["liveness"]["weighted_shortfall"] == without_gpu
        assert Decimal(cpu["points"]) == 200 * (1 - Decimal(without_gpu))


def test_a_cpu_node_with_a_gpu_weight_is_refused():
    r = receipt(
        units=[{"kind": "cpu", "count": 8, "tier": "cpu-hpc", "multiplier": "1", "k": "25"}], weights=GPU_WEIGHTS
    )
    with pytest.raises(rewards.ReceiptError, match="no GPU weight"):
        rewards.reward_recompute(r)


def test_the_shortfall_is_the_mean_over_the_eras_challenges_truncated():
    # One missed challenge (1 everywhere: weighted 1) among 96: 1/96 = 0.0104166… → 0.010416.
    missed = {"cpu": "1", "ram": "1", "storage": "1", "gpu": "1"}
    r = built(challenges=[missed], passed=95)
    assert r["liveness"]["count"] == 96
    assert r["liveness"]["weighted_shortfall"] == "0.010416"
    assert r["liveness"]["factor"] == "0.989584"
    assert r["points"] == "494.792"
    # 1/3 → 0.333333; never below 0.
    assert built(challenges=[missed], passed=2)["liveness"]["weighted_shortfall"] == "0.333333"
    assert built(challenges=[missed])["liveness"]["factor"] == "0"
    assert built()["liveness"]["factor"] == "1"  # no challenge: no shortfall


# --- Trust tier, utilization, forfeit ----------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "multiplier", "points"),
    [
        (1, "2.0", "1000"),
        (2, "1.7", "850"),
        (3, "1.5", "750"),
        (4, "1.2", "600"),
        (5, "1.1", "550"),
        (6, "1.0", "500"),
        (7, "0", "0"),
    ],
)
def test_trust_tier_multipliers(tier, multiplier, points):
    assert built(tier=tier, multiplier=multiplier)["points"] == points


def test_utilization_counts_leased_units_in_online_time_only():
    # 4 GPUs; a 2-GPU lease all era, a 1-GPU lease 00:00–12:00 while the node is offline
    # 06:00–12:00: online 18 h × 4 = 72 GPU-hours; leased 2 × 18 + 1 × 6 = 42 → 0.583333.
    r = built(
        units=[{"kind": "gpu", "count": 4, "tier": "medium-1", "multiplier": "1", "k": "500"}],
        capacity=4,
        outages=[(at(6), at(12))],
        leases=[
            {"id": "1", "start": at(-5), "end": at(30), "units": 2},
            {"id": "2", "start": at(0), "end": at(12), "units": 1},
        ],
    )
    assert r["utilization"]["online_unit_seconds"] == str(72 * 3600)
    assert r["utilization"]["leased_unit_seconds"] == str(42 * 3600)
    assert r["utilization"]["utilization"] == "0.583333"
    assert r["utilization"]["factor"] == "1.2916665"  # 1 + 0.5 × 0.583333
    assert r["points"] == "2583.333"  # 2000 × 1.2916665


def test_utilization_is_at_most_1_and_the_bonus_is_a_parameter():
    leases = [{"id": str(i), "start": at(0), "end": at(24), "units": 1} for i in range(3)]
    r = built(leases=leases)
    assert r["utilization"]["utilization"] == "1"
    assert r["points"] == "750"  # 500 × 1.5
    assert built(leases=leases, bonus="0")["points"] == "500"


def test_forfeited_era_earns_nothing_and_says_why():
    r = built(forfeited=True)
    assert r["forfeit"] == {"forfeited": True, "reason": "spoofed GPU", "factor": "0"}
    assert r["points"] == "0"


# --- $SPON --------------------------------------------------------------------------------------


def test_spon_shares_floor_then_largest_remainder_then_lower_node_id():
    assert rewards.spon_shares({1: "1", 2: "2"}, 100) == {1: 33, 2: 67}  # 33.3 / 66.6: 2 has the larger remainder
    assert rewards.spon_shares({3: "5", 1: "5", 2: "5"}, 10) == {3: 3, 1: 4, 2: 3}  # equal remainders: lowest id
    assert rewards.spon_shares({1: "0", 2: "0"}, 10**18) == {1: 0, 2: 0}  # no points: nothing issued
    assert rewards.spon_shares({}, 10**18) == {}
    assert rewards.spon_shares({1: "0", 2: "427.5"}, 10**23) == {1: 0, 2: 10**23}
    with pytest.raises(rewards.ReceiptError):
        rewards.spon_shares({1: "-1"}, 100)
    with pytest.raises(rewards.ReceiptError, match="more than 6 decimals"):
        rewards.spon_shares({1: "0.0000001"}, 100)


def test_allocated_receipts_state_the_split_and_check():
    receipts = [built(node_id=n, tier=tier, multiplier=m) for n, tier, m in ((1, 6, "1.0"), (2, 4, "1.2"), (3, 7, "0"))]
    rewards.receipts_allocate(receipts, 10)
    # 500 + 600 + 0 = 1100 points; 10 × 500 / 1100 = 4 rem 600/1100, 10 × 600 / 1100 = 5 rem
    # 500/1100: floors 4 + 5, the unit left goes to node 1 (the larger remainder).
    assert [r["spon"]["floor"] for r in receipts] == ["4", "5", "0"]
    assert [r["spon"]["remainder_unit"] for r in receipts] == [1, 0, 0]
    assert [r["spon"]["amount"] for r in receipts] == ["5", "5", "0"]
    assert receipts[0]["era"]["remainder_cutoff"] == {"remainder": str(600 * 10**6), "node_id": 1}
    assert receipts[0]["era"]["total_points"] == "1100"
    assert rewards.era_check(receipts) == []
    for r in receipts:
        assert rewards.receipt_check(json.loads(json.dumps(r))) == []


# --- Tampering ----------------------------------------------------------------------------------


def _allocated() -> dict:
    r = built(challenges=[{"gpu": "0.5"}], passed=3, outages=[(at(1), at(2))])
    rewards.receipts_allocate([r, built(node_id=2)], 10**23)
    return json.loads(json.dumps(r))


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("points", "500", "points: the receipt says 500"),
        ("liveness.factor", "1", "liveness.factor"),
        ("liveness.challenges.0.shortfall.gpu", "0.1", "liveness.challenges.0.weighted"),
        ("uptime.outages", [], "uptime.down_seconds"),
        ("trust.multiplier", "2.0", "points"),
        ("spon.amount", "1", "spon.amount"),
        ("era.total_points", "1", "exceed the era's total points"),
        ("liveness.challenges.0.shortfall.gpu", "1.5", "above 1"),
        ("liveness.weights.gpu", "0.7", "sum to 1.1"),
        ("version", 2, "version"),
    ],
)
def test_a_tampered_receipt_is_reported(path, value, problem):
    r = _allocated()
    assert rewards.receipt_check(r) == []
    parent = r
    *parts, last = path.split(".")
    for part in parts:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    parent[int(last) if isinstance(parent, list) else last] = value
    problems = rewards.receipt_check(r)
    assert problems and any(problem in p for p in problems), problems


def test_an_era_with_a_missing_or_changed_receipt_is_reported():
    receipts = [built(node_id=n) for n in (1, 2, 3)]
    rewards.receipts_allocate(receipts, 10**18 + 1)
    assert rewards.era_check(receipts) == []
    assert any("sum to" in p for p in rewards.era_check(receipts[:2]))
    other = copy.deepcopy(receipts)
    other[2]["trust"] = {"tier": 6, "multiplier": "1.1"}
    assert any("tier 6" in p for p in rewards.era_check(other))


# --- Property: random eras ----------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
hour = st.integers(min_value=-4 * 3600, max_value=28 * 3600).map(lambda s: START + timedelta(seconds=s))
span = st.tuples(hour, hour).map(lambda p: [rewards.iso(min(p)), rewards.iso(max(p))])
fraction = st.sampled_from(["0", "0", "0.1", "0.25", "0.333", "0.5", "1"])


@st.composite
def node_receipt(draw, node_id: int) -> dict:
    gpu = draw(st.booleans())
    count = draw(st.integers(1, 8 if gpu else 64))
    multiplier = draw(st.sampled_from(["0.1", "0.25", "0.5", "1", "1.5", "12", "15"]))
    tier = draw(st.integers(1, 7))
    leases = [
        {"id": str(i), "start": s[0], "end": s[1], "units": draw(st.integers(1, count))}
        for i, s in enumerate(draw(st.lists(span, max_size=3)))
    ]
    return receipt(
        node_id=node_id,
        units=[
            {
                "kind": "gpu" if gpu else "cpu",
                "count": count,
                "tier": "t",
                "multiplier": multiplier,
                "k": "500" if gpu else "25",
            }
        ],
        capacity=count,
        outages=draw(st.lists(span, max_size=4)),
        excused=draw(st.lists(span, max_size=1)),
        challenges=[
            {name: draw(fraction) for name in ("cpu", "ram", "storage", "gpu") if gpu or name != "gpu"}
            for _ in range(draw(st.integers(0, 3)))
        ],
        passed=draw(st.integers(0, 96)),
        tier=tier,
        multiplier=["2.0", "1.7", "1.5", "1.2", "1.1", "1.0", "0"][tier - 1],
        leases=leases,
        forfeited=draw(st.integers(0, 9)) == 0,
    )


@st.composite
def era(draw) -> tuple[list[dict], int]:
    size = draw(st.integers(1, 12))
    return [draw(node_receipt(node_id)) for node_id in range(1, size + 1)], draw(st.integers(0, 10**27))


@PROPERTY
@given(era())
def test_random_eras_issue_exactly_the_emission_and_every_receipt_recomputes(drawn):
    receipts, emission = drawn
    for r in receipts:
        rewards.receipt_build(r)
    rewards.receipts_allocate(receipts, emission)
    published = json.loads(json.dumps(receipts))
    amounts = [int(r["spon"]["amount"]) for r in published]
    assert all(a >= 0 for a in amounts)
    total_points = sum(Decimal(r["points"]) for r in published)
    assert sum(amounts) == (emission if total_points > 0 else 0)
    for r in published:
        assert rewards.receipt_check(r) == []
        assert rewards.reward_points(r) == Decimal(r["points"]) >= 0
        # amount = floor(E × points / total) + the remainder unit, by hand:
        if total_points:
            share = Fraction(emission) * Fraction(r["points"]) / Fraction(total_points)
            assert 0 <= int(r["spon"]["amount"]) - math.floor(share) <= 1
    assert rewards.era_check(published) == []
    # Any change to a stated figure is caught.
    tampered = copy.deepcopy(published[0])
    tampered["points"] = str(Decimal(tampered["points"]) + Decimal("0.000001"))
    assert rewards.receipt_check(tampered)
