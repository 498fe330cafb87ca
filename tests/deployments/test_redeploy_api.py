"""POST /api/v1/deployments/{id}/redeploy: the deployment page's "re-deploy on a similar node" for a
pinned deployment, from a script. It answers as POST /deployments does (201, the new deployment's
id, status, estimate and page), closes the old one if it still runs, refuses what the page refuses,
needs the `deploy` scope, and counts the new hold against a key's daily spend cap."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.api_keys import api_key_create
from accounts.models import ApiKeySpend
from marketplace.deployments import services as deployments
from marketplace.models import Deployment, DeploymentStatus
from tests.deployments.conftest import fund, spec_text
from tests.deployments.test_failover import pinned_spec, running_lease
from tests.factories import make_user

pytestmark = pytest.mark.django_db
USD = 1_000_000


def api(user, **key) -> Client:
    _key, raw = api_key_create(user=user, label="redeploy test", **key)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def redeploy(client: Client, deployment_id) -> object:
    return client.post(f"/api/v1/deployments/{deployment_id}/redeploy", content_type="application/json")


@pytest.fixture
def pinned(renter, market) -> Deployment:
    """A running deployment pinned to the "good" node."""
    lease = running_lease(renter, pinned_spec(market["good"].id))
    assert lease.node_id == market["good"].id
    return lease.deployment


def test_a_pinned_deployment_is_redeployed_unpinned_and_answered_like_a_create(renter, market, pinned):
    response = redeploy(api(renter), pinned.id)

    assert response.status_code == 201, response.content
    body = response.json()
    new = Deployment.objects.get(id=body["id"])
    assert new.id != pinned.id and new.owner == renter
    assert body["status"] == "pending" == new.status
    assert body["redeployed_from"] == pinned.id
    assert body["url"].endswith(f"/deployments/{new.id}/")
    assert body["estimate"] == {
        "max_price_per_hour": "0.500000",
        "max_price_per_hour_micros": 500_000,
        "max_total": "12.000000",
        "max_total_micros": 12_000_000,
        "hold": "12.000000",
        "hold_micros": 12_000_000,
        "hold_hours": 24,
    }
    # The same answer POST /deployments gives for the new spec, plus where it came from.
    created = api(renter).post("/api/v1/deployments", {"spec": new.spec_source}, content_type="application/json")
    assert created.status_code == 201, created.content
    assert set(body) == set(created.json()) | {"redeployed_from"}
    assert body["estimate"] == created.json()["estimate"]
    # Unpinned, same model and price cap; the old one closed, saying why.
    assert new.spec["node"] is None and new.spec["gpu_models"] == ["rtx4090"]
    assert new.max_price_per_hour_micros == pinned.max_price_per_hour_micros
    pinned.refresh_from_db()
    assert pinned.status == DeploymentStatus.CLOSED
    assert "Re-deployed on a similar node." in pinned.events.get(kind="closed").message
    assert new.events.filter(kind="redeploy").exists()
    detail = api(renter).get(f"/api/v1/deployments/{new.id}")
    assert detail.status_code == 200 and detail.json()["spec"]["node"] is None


def test_the_browser_session_may_redeploy_too(renter, pinned):
    client = Client()
    client.force_login(renter)
    response = redeploy(client, pinned.id)
    assert response.status_code == 201, response.content
    assert Deployment.objects.filter(owner=renter).count() == 2


def test_an_unpinned_deployment_is_refused_with_409_and_nothing_changes(renter, market):
    lease = running_lease(renter)
    response = redeploy(api(renter), lease.deployment_id)
    assert response.status_code == 409, response.content
    assert response.json() == {
        "message": "Only a deployment pinned to one node is re-deployed this way.",
        "extra": {},
    }
    assert Deployment.objects.count() == 1
    lease.deployment.refresh_from_db()
    assert lease.deployment.is_active


def test_another_users_deployment_is_a_404(pinned, market):
    outsider = make_user(is_developer=True)
    fund(outsider)
    response = redeploy(api(outsider), pinned.id)
    assert response.status_code == 404
    assert response.json()["message"] == "No such deployment."
    pinned.refresh_from_db()
    assert pinned.is_active and Deployment.objects.count() == 1


@pytest.mark.parametrize("bad_id", ["0", "-3", "abc", str(2**63)])
def test_a_bad_id_is_a_422_naming_it(renter, bad_id):
    response = redeploy(api(renter), bad_id)
    assert response.status_code == 422, response.content
    assert response.json()["extra"]["errors"][0]["field"] == "deployment_id"


def test_too_little_credit_is_402_with_the_top_up_link(renter, market, pinned):
    deployments.deployment_close(deployment=pinned)
    # The credits go to another deployment meanwhile: what is left cannot hold the re-deploy's $12.
    deployments.deployment_create(user=renter, source=spec_text(price="3.90"))
    response = redeploy(api(renter), pinned.id)
    assert response.status_code == 402, response.content
    assert response.json()["extra"]["top_up_url"] == "/billing/"
    assert Deployment.objects.filter(owner=renter).count() == 2


@pytest.mark.parametrize(
    ("scopes", "status"),
    [(["deploy"], 201), (["full"], 201), (["provider"], 403), (["read"], 403), (["billing"], 403)],
)
def test_redeploy_needs_the_deploy_scope(renter, pinned, scopes, status):
    response = redeploy(api(renter, scopes=scopes), pinned.id)
    assert response.status_code == status, response.content
    if status == 403:
        assert response.json()["message"] == "This key lacks the 'deploy' scope."
        assert response.json()["extra"]["required_scope"] == "deploy"
        pinned.refresh_from_db()
        assert pinned.is_active and Deployment.objects.count() == 1


def test_a_key_over_its_daily_cap_is_refused_and_the_old_deployment_keeps_running(renter, pinned):
    response = redeploy(api(renter, scopes=["deploy"], daily_spend_cap=5 * USD), pinned.id)
    assert response.status_code == 403, response.content
    assert response.json()["extra"]["needed_micros"] == 12 * USD
    assert "may commit at most $5.00 a day" in response.json()["message"]
    pinned.refresh_from_db()
    assert pinned.is_active and Deployment.objects.count() == 1  # the close was undone with the create
    assert not ApiKeySpend.objects.filter(amount__gt=0).exists()


def test_a_key_with_a_cap_counts_the_new_hold(renter, pinned):
    client = api(renter, scopes=["deploy"], daily_spend_cap=30 * USD)
    assert redeploy(client, pinned.id).status_code == 201
    assert ApiKeySpend.objects.get().amount == 12 * USD
    # A second re-deploy of the same (now closed) pinned deployment counts again: 24 of 30.
    assert redeploy(client, pinned.id).status_code == 201
    assert ApiKeySpend.objects.get().amount == 24 * USD
    third = redeploy(client, pinned.id)
    assert third.status_code == 403 and third.json()["extra"]["spent_today_micros"] == 24 * USD
