"""The rewards admin (issue 22, part 7): eras with their totals, read-only; "Re-run" (staff who may
change eras, POST) recomputes an era through providers.era_rewards and says "no change" or how many
receipts changed; node rewards searchable by node and provider, each receipt pretty-printed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from chain.models import Rate
from providers import uptime
from providers.era_rewards import era_rewards_run
from providers.models import NodeReward, RewardEra
from tests.factories import make_node, make_provider, make_user

TODAY = datetime.combine(timezone.now().astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
ERA_START = TODAY - timedelta(days=1)
NOW = TODAY + timedelta(hours=1)


@pytest.fixture
def era(db) -> RewardEra:
    """Yesterday's era, closed and computed once: two agent nodes of two providers, all era up."""
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal("0.10"), at=ERA_START, source="test")
    for name in ("alpha-box", "beta-box"):
        make_node(
            provider=make_provider(display_name=f"{name} owner"),
            name=name,
            is_simulated=False,
            trust_tier=4,
            registered_at=ERA_START - timedelta(days=5),
        )
    uptime.close_eras(now=NOW, max_eras=1)
    era = era_rewards_run(era_start=ERA_START, now=NOW)
    assert era.nodes == 2 and era.runs >= 1
    return era


@pytest.fixture
def superuser_client(db):
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def _staff_client(*codenames: str) -> Client:
    user = make_user(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="providers", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_the_era_list_shows_the_totals(superuser_client, era):
    html = superuser_client.get("/admin/providers/rewardera/").content.decode()
    assert "100,000" in html  # $SPON issued: the whole emission
    assert f"{era.nodes} node rewards" in html
    assert "Pool left" in html and "Floor paid" in html and "Floor wanted" in html
    page = superuser_client.get(f"/admin/providers/rewardera/{era.id}/change/").content.decode()
    assert 'data-testid="rerun-link"' in page
    assert 'name="_save"' not in page  # read-only: nothing to save
    assert superuser_client.get("/admin/providers/rewardera/add/").status_code == 403


def test_rerun_from_the_list_says_no_change_then_counts_changed_receipts(superuser_client, era):
    runs = era.runs
    data = {"action": "rerun", "_selected_action": [era.id], "index": 0}
    response = superuser_client.post("/admin/providers/rewardera/", data, follow=True)
    assert any(": no change (run" in m for m in _messages(response)), _messages(response)
    era.refresh_from_db()
    assert era.runs == runs + 1 and era.changed == 0
    # A receipt altered behind the era's back: the re-run puts it back and says so.
    reward = NodeReward.objects.filter(era=era).order_by("id").first()
    points = reward.points
    NodeReward.objects.filter(id=reward.id).update(points=Decimal("1"))
    response = superuser_client.post("/admin/providers/rewardera/", data, follow=True)
    assert any(": 1 receipt changed (run" in m for m in _messages(response)), _messages(response)
    reward.refresh_from_db()
    assert reward.points == points


def test_the_rerun_button_asks_then_posts(superuser_client, era):
    url = f"/admin/providers/rewardera/{era.id}/rerun/"
    page = superuser_client.get(url)
    assert page.status_code == 200 and 'data-testid="rerun-submit"' in page.content.decode()
    era.refresh_from_db()
    runs = era.runs
    assert RewardEra.objects.get(id=era.id).runs == runs  # a GET changes nothing
    response = superuser_client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == f"/admin/providers/rewardera/{era.id}/change/"
    assert any("no change" in m for m in _messages(response))
    assert RewardEra.objects.get(id=era.id).runs == runs + 1


def test_rerun_needs_the_change_permission(era):
    viewer = _staff_client("view_rewardera", "view_nodereward")
    assert viewer.get("/admin/providers/rewardera/").status_code == 200
    assert viewer.post(f"/admin/providers/rewardera/{era.id}/rerun/").status_code == 403
    data = {"action": "rerun", "_selected_action": [era.id], "index": 0}
    viewer.post("/admin/providers/rewardera/", data)
    runs = era.runs
    assert RewardEra.objects.get(id=era.id).runs == runs  # the action is not offered to them
    changer = _staff_client("view_rewardera", "change_rewardera")
    assert changer.post(f"/admin/providers/rewardera/{era.id}/rerun/").status_code == 302
    assert RewardEra.objects.get(id=era.id).runs == runs + 1
    anonymous = Client()
    assert anonymous.post(f"/admin/providers/rewardera/{era.id}/rerun/").status_code == 302  # to the login
    assert RewardEra.objects.get(id=era.id).runs == runs + 1


def test_a_missing_era_is_404(superuser_client, db):
    assert superuser_client.get("/admin/providers/rewardera/999999/rerun/").status_code == 404


def test_node_rewards_are_read_only_searchable_and_show_the_receipt(superuser_client, era):
    alpha = NodeReward.objects.get(era=era, node__name="alpha-box")
    listing = superuser_client.get("/admin/providers/nodereward/", {"q": "alpha-box"}).content.decode()
    assert "alpha-box" in listing and "beta-box" not in listing
    by_owner = superuser_client.get("/admin/providers/nodereward/", {"q": "beta-box owner"}).content.decode()
    assert "beta-box" in by_owner and "alpha-box (" not in by_owner
    by_id = superuser_client.get("/admin/providers/nodereward/", {"q": str(alpha.node_id)}).content.decode()
    assert "alpha-box" in by_id
    by_era = superuser_client.get("/admin/providers/nodereward/", {"era__id__exact": era.id})
    assert by_era.status_code == 200 and "alpha-box" in by_era.content.decode()
    page = superuser_client.get(f"/admin/providers/nodereward/{alpha.id}/change/").content.decode()
    assert 'data-testid="receipt-json"' in page
    assert "&quot;trust&quot;: {" in page  # pretty-printed, indented JSON
    assert superuser_client.post(f"/admin/providers/nodereward/{alpha.id}/delete/").status_code == 403
