"""Bad input never gets a 5xx: every API route (read from the API's own route table, so a new route
is covered the day it is added) and every page is sent junk path ids, query strings and bodies, as
a stranger, as the deployment's owner and as the provider whose node runs it."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from spheron_web.api import api
from tests.deployment_pages.conftest import bearer, create_and_match
from tests.factories import make_user

pytestmark = pytest.mark.django_db

IDS = ["0", "-1", "99999999999999999999999", "abc", "1.5", "%00"]
QUERIES = [
    "", "?limit=-1", "?limit=abc", "?limit=100000000000000000000", "?cursor=zzz", "?cursor=%00%ff", "?sort=bogus",
    "?min_price=1e400", "?max_price=-5", "?gpu_model=%00", "?region=" + "x" * 5000, "?page=-1", "?page=abc",
    "?since=notadate", "?from=2026-13-45", "?after=-1", "?after=99999999999999999999999", "?kind=%ff",
    "?min_vram=nan", "?min_uptime=inf", "?status=zzz", "?tail=-1", "?tail=abc", "?node=abc", "?mode=zzz",
]  # fmt: skip
JSON_BODIES = [
    "", "not json", "[]", "null", "1", '"s"', '{"spec": 5}', '{"spec": ""}', '{"spec": "\\u0000"}',
    '{"spec": "services: [1"}', '{"spec": {"version": 5}}', '{"amount": 1e400}', '{"amount": -1}',
    '{"amount_usd": "abc"}', '{"amount_usd": 99999999999999999999}', '{"label": "' + "x" * 10000 + '"}',
    '{"enabled": "maybe"}', '{"in_maintenance": null}', '{"events": [{"kind": 5}]}', '{"events": "x"}',
    '{"gpus": [{"model": null}]}',
    '{"spec": {"version": "2.0", "services": {"a": {"image": "x", "resources": {"cpu": {"units": 1e400}}}}}}',
    '{"spec": {"version": "2.0", "services": {"a": {"image": "x", "resources": {"cpu": {"units": 1' + "0" * 25
    + '}}}}}}',
]  # fmt: skip
FORM_BODIES = [
    {}, {"spec": "\x00"}, {"spec": "a: [1"}, {"spec": "x" * 200_000}, {"amount": "1e400"}, {"amount": "-5"},
    {"amount_usd": "99999999999999999999"}, {"label": "x" * 5000}, {"display_name": "\x00"}, {"gpu_price": "nan"},
    {"amount_spon": "-1"}, {"amount_spon": "1e400"}, {"enabled": "zz"}, {"role": "zzz"},
]  # fmt: skip


def api_routes() -> list[tuple[str, str]]:
    """(method, path with `{name}` placeholders) of every operation of /api/v1."""
    root = api.root_path if hasattr(api, "root_path") else "/api/v1/"
    routes = []
    for prefix, router in api._routers:  # ninja's route table: (prefix, router)
        for path, view in router.path_operations.items():
            for operation in view.operations:
                for method in operation.methods:
                    routes.append((method, re.sub("/+", "/", f"/{root}/{prefix}/{path}").rstrip("/")))
    return routes


def page_routes() -> list[str]:
    """Every page route outside the API, the admin and allauth, with `<converter:name>` placeholders."""
    found = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and not route.startswith(("api/", "admin/", "accounts/")):
                found.append("/" + route)

    walk(get_resolver().url_patterns, "")
    return found


@pytest.fixture
def people(owner, market):
    deployment, lease = create_and_match(owner)
    return deployment, lease, {"stranger": make_user(email="stranger@example.test"), "owner": owner,
                               "provider": lease.node.provider.user}  # fmt: skip


def test_every_api_route_answers_bad_input_without_a_server_error(people):
    deployment, _lease, users = people
    routes = api_routes()
    assert ("POST", "/api/v1/deployments") in routes and len(routes) >= 20
    failures = []
    for who, user in users.items():
        client = Client(raise_request_exception=False, **bearer(user))
        for method, path in routes:
            ids = IDS + [str(deployment.id)] if "{" in path else [""]
            for id_ in ids:
                url = re.sub(r"\{[^}]+\}", id_, path)
                if method == "GET":
                    responses = [(url + query, client.get(url + query)) for query in QUERIES]
                else:
                    responses = [(url, client.generic(method, url, body, content_type="application/json"))
                                 for body in JSON_BODIES]  # fmt: skip
                failures += [(who, method, u, r.status_code) for u, r in responses if r.status_code >= 500]
    assert not failures


def test_every_page_answers_bad_input_without_a_server_error(people):
    deployment, lease, users = people
    pages = page_routes()
    assert "/deployments/new/" in pages and len(pages) >= 20
    failures = []
    for who, user in users.items():
        client = Client(raise_request_exception=False)
        client.force_login(user)
        for page in pages:
            if "(?P<" in page or page.endswith(("webhook/", ".csv")):
                continue  # regex routes; the Stripe webhook has its own signature tests; CSV is a download
            ids = ["0", "99999999999999999999", str(deployment.id), str(lease.node_id)] if "<" in page else [""]
            for id_ in ids:
                url = re.sub(r"<[^>]+>", id_, page)
                for query in QUERIES[:12]:
                    response = client.get(url + query)
                    if response.status_code >= 500:
                        failures.append((who, "GET", url + query, response.status_code))
                for body in FORM_BODIES:
                    response = client.post(url, body)
                    if response.status_code >= 500:
                        failures.append((who, "POST", url, str(body)[:40], response.status_code))
    assert not failures
