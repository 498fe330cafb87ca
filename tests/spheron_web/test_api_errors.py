"""Every answer under /api/ is JSON, including paths and methods no API view handles."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_an_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/v1/deployment")  # a typo of /api/v1/deployments
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "message": "No API route GET /api/v1/deployment: the routes are listed at /api/v1/docs.",
        "extra": {},
    }


def test_a_method_a_route_does_not_take_is_a_json_405_with_allow(client):
    response = client.delete("/api/v1/offers")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json() == {
        "message": "DELETE is not allowed on /api/v1/offers; use GET.",
        "extra": {"allowed": ["GET"]},
    }


def test_api_views_own_json_errors_and_pages_are_left_alone(client):
    offer = client.get("/api/v1/offers/999999")
    assert offer.json() == {"message": "No offer with node id 999999.", "extra": {}}
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and "application/json" not in page["Content-Type"]
