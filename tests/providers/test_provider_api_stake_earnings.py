"""GET /api/v1/provider/stake and GET /api/v1/provider/earnings: the stake page's and the earnings
dashboard's figures as JSON, for a session or an API key; a user who is not a provider is refused
with the API's error shape; bad input is a 4xx that names the field."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client, override_settings

from accounts.api_keys import api_key_create
from providers import services
from providers.models import NodeReward
from tests.factories import make_node, make_user
from tests.providers.test_earnings_dashboard import SPON, day, market, owner_client  # noqa: F401 (fixtures)


def bearer(user) -> dict[str, str]:
    _key, raw = api_key_create(user=user, label="api test")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


# --- stake ---------------------------------------------------------------------------------------


@override_settings(MIN_STAKE_PER_GPU_SPON=Decimal("600"))
def test_stake_says_what_is_staked_what_the_nodes_need_and_the_history(provider):
    make_node(provider=provider, name="one", gpu_count=2)
    make_node(provider=provider, name="two", gpu_count=2, stake_covered=False)
    services.stake_record(provider=provider, kind="unstake", amount="100.5", reason="took some back")
    response = Client().get("/api/v1/provider/stake", **bearer(provider.user))
    assert response.status_code == 200, response.content
    data = response.json()
    # 2000 staked by the fixture, 100.5 taken back; four GPUs at 600 each need 2400.
    assert data["staked_spon"] == "1899.5"
    assert data["required_spon"] == "2400"
    assert data["shortfall_spon"] == "500.5"
    assert data["covered"] is False
    assert data["min_per_gpu_spon"] == "600"
    assert data["units"] == 4 and data["gpu_units"] == 4 and data["cpu_machines"] == 0
    assert data["uncovered_nodes"] == ["two"]
    latest, first = data["history"]
    assert latest["kind"] == "unstake" and latest["amount"] == str(1005 * SPON // 10)
    assert latest["amount_spon"] == "100.5" and latest["balance_after_spon"] == "1899.5"
    assert latest["reason"] == "took some back" and latest["source"] == "admin"
    assert first["kind"] == "stake" and first["amount_spon"] == "2000"


def test_a_stake_that_covers_every_unit_says_so(provider):
    make_node(provider=provider, name="one")
    data = Client().get("/api/v1/provider/stake", **bearer(provider.user)).json()
    assert data["covered"] is True and data["shortfall_spon"] == "0"
    assert data["uncovered_nodes"] == []


# --- earnings ------------------------------------------------------------------------------------


def test_earnings_per_day_match_the_dashboard_and_add_up(owner_client, market):  # noqa: F811
    response = owner_client.get("/api/v1/provider/earnings")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["days"] == 30 and len(data["items"]) == 30
    assert data["first"] == day(29) and data["last"] == day(0) and data["node_id"] is None
    by_day = {item["day"]: item for item in data["items"]}
    assert [item["day"] for item in data["items"]] == sorted(by_day)  # oldest first
    late_a = NodeReward.objects.get(era=market["late"], node=market["a"])
    yesterday = by_day[day(1)]
    # 1.00 + 0.50 − 0.20 rental; 100 $SPON slashed at the current $0.25.
    assert yesterday["rental"] == "1.300000"
    assert yesterday["spon"] == str(int(late_a.spon)) and yesterday["spon_usd"] == "0.000000"
    assert yesterday["unrated_rewards"] == 1 and by_day[day(2)]["unrated_rewards"] == 0
    assert yesterday["slash_spon"] == str(100 * SPON) and yesterday["slash_usd"] == "25.000000"
    assert yesterday["total"] == "-23.700000"
    assert by_day[day(2)]["floor"] == "0.350000"
    assert data["totals"]["rental"] == "1.600000"
    assert data["totals"]["slash_spon"] == str(110 * SPON)
    assert data["slash_rate"] == "0.25"
    total = sum(Decimal(item["total"]) for item in data["items"])
    assert Decimal(data["totals"]["total"]) == total


def test_earnings_of_fewer_days_and_of_one_node(owner_client, market):  # noqa: F811
    data = owner_client.get("/api/v1/provider/earnings", {"days": 7}).json()
    assert data["days"] == 7 and [item["day"] for item in data["items"]][0] == day(6)
    box_b = market["b"]
    one = owner_client.get("/api/v1/provider/earnings", {"node": box_b.id, "days": 90}).json()
    assert one["node_id"] == box_b.id and len(one["items"]) == 90
    assert one["totals"]["rental"] == "0.700000"  # its era's rental, not the ledger's
    assert one["totals"]["slash_spon"] == "0"  # its slash was upheld on appeal


def test_earnings_without_a_spon_rate_leave_the_slashes_unvalued(owner_client, market):  # noqa: F811
    from chain.models import Rate

    Rate.objects.all().delete()
    data = owner_client.get("/api/v1/provider/earnings").json()
    assert data["slash_rate"] is None and data["no_rate_reason"]
    assert data["totals"]["slash_usd"] is None
    assert {item["day"]: item for item in data["items"]}[day(1)]["total"] == "1.300000"


@pytest.mark.parametrize(
    "query, field",
    [
        ({"days": "0"}, "days"),
        ({"days": "91"}, "days"),
        ({"days": "abc"}, "days"),
        ({"days": "7.5"}, "days"),
        ({"days": "99999999999999999999999"}, "days"),
        ({"node": "abc"}, "node"),
        ({"node": "0"}, "node"),
    ],
)
def test_bad_earnings_input_is_a_422_naming_the_field(owner_client, market, query, field):  # noqa: F811
    response = owner_client.get("/api/v1/provider/earnings", query)
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["message"].startswith("Invalid input.")
    assert [error["field"] for error in body["extra"]["errors"]] == [field]


def test_another_providers_node_is_a_404(owner_client, market):  # noqa: F811
    response = owner_client.get("/api/v1/provider/earnings", {"node": market["other"].id})
    assert response.status_code == 404
    assert response.json() == {"message": "No such node.", "extra": {}}


# --- who may ask ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/provider/stake", "/api/v1/provider/earnings"])
def test_a_user_who_is_not_a_provider_is_refused_with_the_error_shape(db, path):
    renter = make_user(email="renter@example.test", is_developer=True)
    response = Client().get(path, **bearer(renter))
    assert response.status_code == 403
    assert response.json() == {"message": "Become a provider first.", "extra": {}}


@pytest.mark.parametrize("path", ["/api/v1/provider/stake", "/api/v1/provider/earnings"])
def test_no_credentials_is_a_401(db, path):
    response = Client().get(path)
    assert response.status_code == 401
    assert response.json()["message"] == "Authentication required."
