from __future__ import annotations

from decimal import Decimal

import pytest

OFFER_FIELDS = {
    "node_id",
    "provider",
    "gpu_model",
    "gpu_count",
    "vram_gb",
    "cpu_cores",
    "memory_gb",
    "storage_gb",
    "region",
    "price_per_hour",
    "uptime_30d",
    "trust_tier",
    "gpu_tier",
    "mode",
    "available_gpus",
}


def test_offer_items_carry_the_contract_fields(client, market):
    response = client.get("/api/v1/offers", {"gpu_model": "h100"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    assert body["next_cursor"] is None
    [item] = body["items"]
    assert OFFER_FIELDS <= set(item)
    node = market["h100x8"]
    assert item["node_id"] == node.id
    assert item["provider"] == "Acme Compute"
    assert (item["gpu_model"], item["gpu_count"], item["vram_gb"], item["available_gpus"]) == ("h100", 8, 80, 6)
    assert item["region"] == "us-west"
    assert item["mode"] == "provider"
    assert item["trust_tier"] == 1
    assert item["gpu_tier"] == "ultra-high-2"
    assert item["uptime_30d"] == pytest.approx(0.995)
    assert isinstance(item["price_per_hour"], str)
    assert Decimal(item["price_per_hour"]) * 1_000_000 == node.price_per_hour_micros


def test_prices_are_exact_decimal_strings(client, market):
    items = client.get("/api/v1/offers", {"gpu_model": "rtx4090", "sort": "price"}).json()["items"]
    # 0.175/h GPU + (16 cores x $0.75 + 64 GB x $0.10 + 500 GB x $0.01 = $23.40) per month / 730 h, rounded once.
    assert items[0]["price_per_hour"] == "0.207055"


def test_cursor_pages_through_every_offer(client, market):
    seen, params = [], {"limit": 2, "sort": "-price"}
    while True:
        body = client.get("/api/v1/offers", params).json()
        seen += [item["node_id"] for item in body["items"]]
        if not body["next_cursor"]:
            break
        params["cursor"] = body["next_cursor"]
    prices = {node.id: node.price_per_hour_micros for node in market.values()}
    assert len(seen) == len(set(seen)) == 6
    assert [prices[node_id] for node_id in seen] == sorted((prices[n] for n in seen), reverse=True)


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"sort": "cheapest"}, 422, "sort"),
        ({"max_price_per_hour": "-1"}, 422, "max_price_per_hour"),
        ({"max_price_per_hour": "NaN"}, 422, "max_price_per_hour"),
        ({"limit": "10000"}, 422, "limit"),
        ({"limit": "0"}, 422, "limit"),
        ({"gpu_model": "rtx\x004090"}, 422, "gpu_model"),
        ({"tier": "secured\x00"}, 422, "tier"),
        ({"min_gpus": "two"}, 422, "min_gpus"),
        ({"min_gpus": "true"}, 422, "min_gpus"),
        ({"min_vram_gb": "1.5"}, 422, "min_vram_gb"),
        ({"min_uptime": "1.5"}, 422, "min_uptime"),
        ({"min_uptime": "inf"}, 422, "min_uptime"),
        ({"mode": "cloud"}, 422, "mode"),
        ({"continent": "atlantis"}, 422, "continent"),
        ({"tier": "gold"}, 422, "tier"),
        ({"gpu_model": "rtx9999"}, 400, "gpu_model"),
        ({"region": "moon-1"}, 400, "region"),
        ({"cursor": "not-a-cursor"}, 400, "cursor"),
        ({"cursor": "x" * 201}, 422, "cursor"),
    ],
)
def test_bad_input_is_a_4xx_that_names_the_field(client, market, params, status, field):
    response = client.get("/api/v1/offers", params)
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"message", "extra"}
    assert field in body["message"]


def test_validation_errors_list_each_field(client, market):
    body = client.get("/api/v1/offers", {"sort": "x", "limit": "x"}).json()
    assert {error["field"] for error in body["extra"]["errors"]} == {"sort", "limit"}


def test_offer_detail_and_missing_offer(client, market):
    node = market["offline"]
    listed = client.get(f"/api/v1/offers/{market['h100x8'].id}").json()
    assert listed["listed"] is True and listed["available_gpus"] == 6 and listed["name"] == market["h100x8"].name
    missing = client.get("/api/v1/offers/999999")
    assert missing.status_code == 404
    assert missing.json()["message"] == "No offer with node id 999999."
    # Not listed: the same 404 as a node that does not exist, except for its owner.
    hidden = client.get(f"/api/v1/offers/{node.id}")
    assert hidden.status_code == 404 and hidden.json()["message"] == f"No offer with node id {node.id}."
    client.force_login(node.provider.user)
    body = client.get(f"/api/v1/offers/{node.id}").json()
    assert body["listed"] is False and body["status"] == "offline"


def test_reference_endpoints(client, db):
    models = {row["slug"]: row for row in client.get("/api/v1/gpu-models").json()}
    assert models["rtx4090"]["gpu_tier"] == "medium-1" and Decimal(models["rtx4090"]["multiplier"]) == 1
    assert models["h100"]["gpu_tier"] == "ultra-high-2" and Decimal(models["h100"]["multiplier"]) == 12
    assert models["apple-m2-max"]["kind"] == "apple"
    regions = {row["code"]: row for row in client.get("/api/v1/regions").json()}
    assert regions["eu-central"]["continent"] == "europe"
    assert {"latitude", "longitude", "name"} <= set(regions["us-east"])


def test_market_board_endpoint(client, market):
    rows = {row["gpu_model"]: row for row in client.get("/api/v1/market").json()}
    assert rows["rtx4090"]["offers"] == 2
    assert rows["h100"]["free_gpus"] == 6
    assert rows["b200"]["lowest_price_per_gpu_hour"] is None
    fizz = {row["gpu_model"]: row for row in client.get("/api/v1/market", {"mode": "fizz"}).json()}
    assert fizz["h100"]["offers"] == 0
    assert client.get("/api/v1/market", {"tier": "bogus"}).status_code == 422


def test_openapi_documents_every_operation_with_an_id(client, db):
    schema = client.get("/api/v1/openapi.json").json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"offers_list", "offers_get", "gpu_models_list", "regions_list", "market_board"} <= operations
    offers = schema["paths"]["/api/v1/offers"]["get"]
    params = {param["name"] for param in offers["parameters"]}
    assert {
        "gpu_model",
        "min_vram_gb",
        "min_gpus",
        "region",
        "continent",
        "max_price_per_hour",
        "min_uptime",
        "tier",
        "mode",
        "sort",
        "limit",
        "cursor",
    } <= params
    assert {"400", "422"} <= set(offers["responses"])
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    # Swagger UI comes from our own static files (ninja in INSTALLED_APPS): the docs work offline.
    assert b"/static/ninja/swagger-ui-bundle.js" in docs.content
    assert b"cdn.jsdelivr.net" not in docs.content
