"""/api/v1/deployments: the contract a script relies on."""

from __future__ import annotations

import json

import pytest
import yaml
from django.test import Client
from spheron_sdk.matching import verify_match

from marketplace.deployments import services as deployments
from marketplace.models import Deployment, DeploymentStatus
from tests.deployment_pages.conftest import bearer, create_and_match, spec_text
from tests.factories import make_user

pytestmark = pytest.mark.django_db
BASE = "/api/v1/deployments"


def post(client: Client, path: str, body: object):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def test_create_from_yaml_is_201_with_the_estimate(owner_api, owner, market):
    response = post(owner_api, BASE, {"spec": spec_text(price="0.50", duration="24h")})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["estimate"] == {
        "max_price_per_hour": "0.500000",
        "max_price_per_hour_micros": 500_000,
        "max_total": "12.000000",
        "max_total_micros": 12_000_000,
        "hold": "12.000000",
        "hold_micros": 12_000_000,
        "hold_hours": 24,
    }
    assert body["url"].endswith(f"/deployments/{body['id']}/")
    assert Deployment.objects.get(id=body["id"]).owner == owner


def test_create_from_the_json_form_is_201(owner_api, market):
    document = yaml.safe_load(spec_text(price="0.40", duration="2h"))
    response = post(owner_api, BASE, {"spec": document})
    assert response.status_code == 201, response.content
    assert response.json()["estimate"]["max_total"] == "0.800000"
    assert Deployment.objects.get(id=response.json()["id"]).spec["gpu_models"] == ["rtx4090"]


def test_spec_problems_are_422_naming_field_and_line(owner_api, market):
    text = spec_text().replace("gpu: {units: 1", "gpu: {units: 0")
    response = post(owner_api, BASE, {"spec": text})
    assert response.status_code == 422
    errors = response.json()["extra"]["errors"]
    assert {"field": "services.app.resources.gpu.units", "message": "must be ≥ 1", "line": 10} in errors
    assert "services.app.resources.gpu.units: must be ≥ 1 (line 10)" in response.json()["message"]
    assert not Deployment.objects.exists()


def test_json_form_problems_name_the_field_without_a_line(owner_api, market):
    document = yaml.safe_load(spec_text())
    document["deployment"]["mode"] = "cloud"
    response = post(owner_api, BASE, {"spec": document})
    assert response.status_code == 422
    assert {"field": "deployment.mode", "message": 'must be "fizz" or "provider"', "line": None} in response.json()[
        "extra"
    ]["errors"]


def test_not_enough_credit_is_402_with_a_top_up_link(market):
    poor = make_user(email="poor@example.test")
    response = post(Client(**bearer(poor)), BASE, {"spec": spec_text()})
    assert response.status_code == 402
    body = response.json()
    assert body["message"].startswith("Not enough credits")
    assert body["extra"]["top_up_url"] == "/billing/"
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    "body",
    [{"spec": 42}, {"spec": True}, {"spec": ["version: 2"]}, {"spec": "x", "extra": 1}, {}],
    ids=["number", "boolean", "list", "unknown-field", "missing"],
)
def test_input_is_strict(owner_api, body):
    response = post(owner_api, BASE, body)
    assert response.status_code == 422
    assert response.json()["extra"]["errors"]


@pytest.mark.parametrize(
    ("value", "kind"), [(42, "a number"), (True, "a boolean"), (["version: 2"], "an array"), (None, "null")]
)
def test_a_spec_of_the_wrong_type_gets_one_plain_message(owner_api, value, kind):
    errors = post(owner_api, BASE, {"spec": value}).json()["extra"]["errors"]
    assert errors == [
        {"field": "spec", "message": f"must be the spec as YAML text (a string) or as a JSON object, not {kind}"}
    ]


def test_validate_reports_errors_with_lines_and_creates_nothing(owner_api, market):
    bad = spec_text().replace("amount: 0.50", "amount: -1").replace("duration: 24h", "duration: 3 weeks")
    response = post(owner_api, f"{BASE}/validate", {"spec": bad})
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False and body["estimate"] is None
    fields = {(error["field"], error["line"]) for error in body["errors"]}
    assert ("services.app.price.amount", 11) in fields
    assert ("deployment.duration", 13) in fields

    response = post(owner_api, f"{BASE}/validate", {"spec": spec_text(price="0.25", duration="3h")})
    body = response.json()
    assert body["valid"] is True and body["errors"] == []
    assert body["estimate"]["max_total"] == "0.750000" and body["estimate"]["hold_hours"] == 3
    assert body["available"] == "100.000000" and body["enough_credits"] is True
    assert not Deployment.objects.exists()


def test_validate_says_when_the_balance_does_not_cover_the_hold(owner_api, market):
    body = post(owner_api, f"{BASE}/validate", {"spec": spec_text(price="10.00", duration="24h")}).json()
    assert body["valid"] is True and body["enough_credits"] is False  # $240 hold, $100 balance


def test_list_is_newest_first_and_pages_by_cursor(owner_api, owner, outsider, market):
    created = [deployments.deployment_create(user=owner, source=spec_text()).id for _ in range(3)]
    deployments.deployment_create(user=outsider, source=spec_text())
    first = owner_api.get(BASE, {"limit": 2}).json()
    assert [item["id"] for item in first["items"]] == created[::-1][:2]
    assert first["next_cursor"]
    second = owner_api.get(BASE, {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [item["id"] for item in second["items"]] == [created[0]] and second["next_cursor"] is None
    item = first["items"][0]
    assert item["status"] == "pending" and item["node_id"] is None and item["gpu_model"] == "rtx4090"
    assert item["price_per_hour"] == "0.500000" and item["cost_so_far_micros"] == 0
    assert owner_api.get(BASE, {"status": "running"}).json()["items"] == []
    assert owner_api.get(BASE, {"cursor": "nonsense"}).status_code == 422
    assert owner_api.get(BASE, {"limit": 0}).status_code == 422


def test_detail_has_the_lease_cost_and_match_summary(owner_api, owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    body = owner_api.get(f"{BASE}/{deployment.id}").json()
    assert body["status"] == "running" and body["close_reason"] == "" and body["failure_reason"] == ""
    assert body["lease"]["node_id"] == lease.node_id
    assert body["lease"]["provider"] == lease.node.provider.display_name
    assert body["lease"]["region"] == lease.node.region_id and body["lease"]["gpu_model"] == "rtx4090"
    assert body["lease"]["price_per_hour_micros"] == lease.price_per_hour_micros
    assert body["lease"]["agent_state"] == "running"
    assert body["cost_so_far_micros"] >= 0 and body["created_at"] and body["started_at"]
    match = body["match"]
    assert match["winner_node_id"] == lease.node_id and match["attempt"] == 1
    assert match["candidate_count"] == 3 and len(match["commitment"]) == 64
    assert match["top"][0]["node_id"] == lease.node_id and set(match["top"][0]["factors"]) >= {"price", "uptime"}
    assert match["proof_url"].endswith(f"/api/v1/deployments/{deployment.id}/match-proof")


def test_close_settles_and_is_idempotent(owner_api, owner, market):
    deployment, _lease = create_and_match(owner)
    response = owner_api.post(f"{BASE}/{deployment.id}/close")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "closed" and body["close_reason"] == "user_closed" and body["closed_at"]
    assert body["lease"]["status"] == "closed"
    again = owner_api.post(f"{BASE}/{deployment.id}/close")
    assert again.status_code == 200 and again.json()["closed_at"] == body["closed_at"]


def test_logs_poll_with_after(owner_api, owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "log", "stream": "stdout", "lines": ["one", "two"]}])
    body = owner_api.get(f"{BASE}/{deployment.id}/logs").json()
    assert [(line["stream"], line["line"]) for line in body["lines"]] == [("stdout", "one"), ("stdout", "two")]
    assert body["lines"][0]["at"] and body["more"] is False
    after = body["next_after"]
    assert owner_api.get(f"{BASE}/{deployment.id}/logs", {"after": after}).json() == {
        "lines": [],
        "next_after": after,
        "more": False,
    }
    deployments.lease_events(lease.node_id, lease.id, [{"type": "log", "stream": "stderr", "lines": ["oops"]}])
    newer = owner_api.get(f"{BASE}/{deployment.id}/logs", {"after": after}).json()
    assert [(line["stream"], line["line"]) for line in newer["lines"]] == [("stderr", "oops")]
    limited = owner_api.get(f"{BASE}/{deployment.id}/logs", {"limit": 1}).json()
    assert len(limited["lines"]) == 1 and limited["more"] is True
    assert owner_api.get(f"{BASE}/{deployment.id}/logs", {"after": -1}).status_code == 422
    # The last N lines, then polling on from there.
    last = owner_api.get(f"{BASE}/{deployment.id}/logs", {"tail": 2}).json()
    assert [line["line"] for line in last["lines"]] == ["two", "oops"] and last["more"] is False
    assert last["next_after"] == newer["next_after"]
    assert owner_api.get(f"{BASE}/{deployment.id}/logs", {"tail": 0}).status_code == 422


def test_events_are_the_timeline(owner_api, owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    deployments.deployment_close(deployment=deployment)
    items = owner_api.get(f"{BASE}/{deployment.id}/events").json()["items"]
    assert [item["kind"] for item in items] == ["created", "matched", "provisioning", "running", "closed"]
    assert items[1]["lease_id"] == lease.id and "Matched node" in items[1]["message"] and items[1]["at"]


def test_match_proof_is_404_until_matched_then_verifies_with_the_sdk(owner_api, owner, market):
    deployment = deployments.deployment_create(user=owner, source=spec_text())
    response = owner_api.get(f"{BASE}/{deployment.id}/match-proof")
    assert response.status_code == 404 and "not been matched" in response.json()["message"]

    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    proof = owner_api.get(f"{BASE}/{deployment.id}/match-proof").json()
    checked = verify_match(proof)
    assert checked["ok"] and checked["winner"] == lease.node_id == proof["winner"]
    assert proof["commitment"] == owner_api.get(f"{BASE}/{deployment.id}").json()["match"]["commitment"]
    assert owner_api.get(f"{BASE}/{deployment.id}/match-proof", {"attempt": 2}).status_code == 404


def test_spec_schema_needs_no_login():
    response = Client().get(f"{BASE}/spec-schema")
    assert response.status_code == 200
    schema = response.json()
    assert schema["$schema"].startswith("https://json-schema.org/") and "services" in schema["properties"]


@pytest.mark.parametrize("suffix", ["", "/logs", "/events", "/match-proof"])
def test_another_users_deployment_is_404(outsider_api, owner, market, suffix):
    deployment, _lease = create_and_match(owner)
    response = outsider_api.get(f"{BASE}/{deployment.id}{suffix}")
    assert response.status_code == 404
    assert response.json() == {"message": "No such deployment.", "extra": {}}


def test_another_user_cannot_close_it(outsider_api, owner, market):
    deployment, _lease = create_and_match(owner)
    assert outsider_api.post(f"{BASE}/{deployment.id}/close").status_code == 404
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.MATCHED
    assert outsider_api.get(BASE).json()["items"] == []


def test_ids_beyond_the_database_range_are_422(owner_api):
    assert owner_api.get(f"{BASE}/{2**70}").status_code == 422


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", ""), ("post", ""), ("get", "/1"), ("post", "/1/close"), ("get", "/1/logs"), ("post", "/validate")],
)
def test_without_login_or_key_is_401(method, path, db):
    client = Client()
    response = client.get(BASE + path) if method == "get" else post(client, BASE + path, {"spec": "x"})
    assert response.status_code == 401
    assert response.json()["message"] == "Authentication required."


def test_a_wrong_api_key_is_401_even_with_a_session(owner_client, owner):
    response = owner_client.get(BASE, HTTP_AUTHORIZATION="Bearer sph_wrong")
    assert response.status_code == 401


def test_the_browser_session_works_with_csrf(owner, market):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.get(BASE).status_code == 200
    response = post(client, BASE, {"spec": spec_text()})
    assert response.status_code == 403 and "CSRF" in response.json()["message"]
