"""Uptime = 1 − offline seconds / window (maintenance excused), and trust tiers from eras.

The eras start at midnight UTC three days before today, so a run with --calendar=2027-01-01
(or 2028-03-01) puts them across a year's end (or a 29 February).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from providers import uptime
from providers.models import EraOutcome, NodeEra, NodeEvent, NodeEventKind, NodeMode, NodeOutage, OutageKind
from tests.factories import make_node

pytestmark = pytest.mark.calendar
T0 = datetime.combine(timezone.now().astimezone(UTC).date() - timedelta(days=3), datetime.min.time(), tzinfo=UTC)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_merge_and_subtract_intervals():
    assert uptime.merge([(h(2), h(3)), (h(0), h(1)), (h(0.5), h(1.5))]) == [(h(0), h(1.5)), (h(2), h(3))]
    assert uptime.subtract([(h(0), h(10))], [(h(2), h(3)), (h(5), h(12))]) == [(h(0), h(2)), (h(3), h(5))]


def test_uptime_counts_the_union_of_downtime_and_excuses_maintenance():
    outages = [
        ("offline", h(1), h(3)),
        ("challenge", h(2), h(4)),  # overlaps the offline period: counted once
        ("maintenance", h(10), h(14)),
        ("offline", h(11), h(12)),  # inside maintenance: excused
    ]
    value, excused = uptime.uptime_between(outages, h(0), h(24), now=h(24))
    assert value == pytest.approx(1 - 3 / 20)  # 3 h down of the 20 h not in maintenance
    assert excused == pytest.approx(4 / 24)


def test_an_open_outage_runs_until_now():
    value, _ = uptime.uptime_between([("offline", h(20), None)], h(0), h(24), now=h(24))
    assert value == pytest.approx(20 / 24)


@pytest.mark.django_db
def test_refresh_uptime_judges_a_node_on_its_life_and_each_window(monkeypatch):
    node = make_node(registered_at=T0 - timedelta(days=10), is_simulated=False)
    now = T0
    NodeOutage.objects.create(
        node=node, kind=OutageKind.OFFLINE, started_at=now - timedelta(hours=6), ended_at=now - timedelta(hours=3)
    )
    NodeOutage.objects.create(
        node=node, kind=OutageKind.OFFLINE, started_at=now - timedelta(days=5), ended_at=now - timedelta(days=4)
    )
    assert uptime.refresh_uptime(now=now) == 1
    node.refresh_from_db()
    assert node.uptime_1d == pytest.approx(1 - 3 / 24, abs=1e-6)
    assert node.uptime_7d == pytest.approx(1 - 27 / (7 * 24), abs=1e-6)
    # The node is 10 days old: the 30-day window is its 10 days.
    assert node.uptime_30d == pytest.approx(1 - 27 / (10 * 24), abs=1e-6)
    assert uptime.refresh_uptime(now=now) == 0  # nothing moved, nothing written


@pytest.mark.parametrize(
    ("tier", "value", "outcome"),
    [
        (7, 0.86, EraOutcome.GOOD),  # above tier 6's 85%
        (7, 0.80, EraOutcome.NEUTRAL),
        (7, 0.75, EraOutcome.BAD),
        (4, 0.971, EraOutcome.GOOD),
        (4, 0.96, EraOutcome.NEUTRAL),
        (4, 0.95, EraOutcome.BAD),  # needs more than 95%
        (1, 0.999, EraOutcome.NEUTRAL),  # nothing above tier 1
        (1, 0.98, EraOutcome.BAD),
    ],
)
def test_era_outcome(tier, value, outcome):
    assert uptime.era_outcome(tier, value) == outcome


def test_next_tier_promotes_and_demotes_after_the_tables_streaks():
    assert uptime.next_tier(tier=7, mode=NodeMode.FIZZ, good_streak=2, bad_streak=0) == 7
    assert uptime.next_tier(tier=7, mode=NodeMode.FIZZ, good_streak=3, bad_streak=0) == 6
    assert uptime.next_tier(tier=5, mode=NodeMode.FIZZ, good_streak=0, bad_streak=7) == 6
    assert uptime.next_tier(tier=1, mode=NodeMode.PROVIDER, good_streak=0, bad_streak=31) == 1
    assert uptime.next_tier(tier=1, mode=NodeMode.PROVIDER, good_streak=0, bad_streak=32) == 2
    # Fizz nodes stay community (4–7); provider-mode nodes can reach the secure tiers.
    assert uptime.next_tier(tier=4, mode=NodeMode.FIZZ, good_streak=99, bad_streak=0) == 4
    assert uptime.next_tier(tier=4, mode=NodeMode.PROVIDER, good_streak=17, bad_streak=0) == 3


@pytest.mark.django_db
def test_close_eras_promotes_a_new_node_after_three_good_days_and_is_idempotent():
    node = make_node(registered_at=T0, is_simulated=False, trust_tier=7)
    assert node.trust_tier == 7
    # Day 2 had 2 hours down (91.7%: good for tier 7, which needs > 85% to count).
    NodeOutage.objects.create(node=node, kind=OutageKind.OFFLINE, started_at=h(30), ended_at=h(32))
    now = T0 + timedelta(days=3, hours=1)
    assert uptime.close_eras(now=now) == 3
    node.refresh_from_db()
    assert node.trust_tier == 6 and NodeEra.objects.filter(node=node).first().good_streak == 0
    eras = list(NodeEra.objects.filter(node=node).order_by("started_at"))
    assert [e.outcome for e in eras] == [EraOutcome.GOOD] * 3
    assert eras[1].uptime == pytest.approx(22 / 24, abs=1e-6)
    assert [(e.tier_before, e.tier_after) for e in eras] == [(7, 7), (7, 7), (7, 6)]
    assert NodeEvent.objects.filter(node=node, kind=NodeEventKind.TIER).count() == 1
    assert uptime.close_eras(now=now) == 0


@pytest.mark.django_db
def test_bad_eras_demote_and_maintenance_eras_do_not_count():
    node = make_node(registered_at=T0, is_simulated=False, trust_tier=6, mode=NodeMode.FIZZ)
    for day in range(5):  # 5 bad days (12 h down each) demote tier 6 → 7
        NodeOutage.objects.create(node=node, kind=OutageKind.OFFLINE, started_at=h(24 * day), ended_at=h(24 * day + 12))
    uptime.close_eras(now=T0 + timedelta(days=4, hours=1))
    node.refresh_from_db()
    assert (node.trust_tier, NodeEra.objects.filter(node=node).first().bad_streak) == (6, 4)
    # Day 5 is down but in maintenance: excused, the streak stands still.
    NodeOutage.objects.create(node=node, kind=OutageKind.MAINTENANCE, started_at=h(96), ended_at=h(120))
    uptime.close_eras(now=T0 + timedelta(days=5, hours=1))
    node.refresh_from_db()
    assert (node.trust_tier, NodeEra.objects.filter(node=node).first().bad_streak) == (6, 4)
    assert NodeEra.objects.get(node=node, started_at=h(96)).outcome == EraOutcome.MAINTENANCE
    NodeOutage.objects.create(node=node, kind=OutageKind.OFFLINE, started_at=h(120), ended_at=h(132))
    uptime.close_eras(now=T0 + timedelta(days=6, hours=1))
    node.refresh_from_db()
    assert node.trust_tier == 7


@pytest.mark.django_db
def test_daily_chart_and_heartbeat_strip():
    node = make_node(registered_at=T0, is_simulated=False)
    NodeOutage.objects.create(node=node, kind=OutageKind.OFFLINE, started_at=h(30), ended_at=h(36))
    days = uptime.uptime_daily(node, days=3, now=h(48 + 12))
    assert [d["uptime"] for d in days] == [1.0, pytest.approx(0.75), 1.0]
    strip = uptime.heartbeat_strip(node, hours=2, bucket_minutes=30, now=h(36.5))
    assert [b["uptime"] for b in strip] == [0.0, 0.0, 0.0, 1.0]
