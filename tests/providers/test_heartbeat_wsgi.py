"""The heartbeat fast path (providers/heartbeat_wsgi.py): served without Django's request stack when
everything is right, handed to Django — same status, same message — when anything is not."""

from __future__ import annotations

import json

import pytest
from django.core.handlers.wsgi import WSGIHandler

from providers import liveness
from providers.heartbeat_wsgi import NodeHeartbeatFastPath
from providers.models import Node, NodeStatus
from tests.providers.conftest import hardware_report, post, wsgi_request

pytestmark = pytest.mark.django_db

BODY = {"agent_version": "0.1.0", "sequence": 1, "usage": {"cpu_percent": 12.5, "gpu_utilization_percent": [40]}}


def _no_django(environ, start_response):
    raise AssertionError(f"handed to Django: {environ['REQUEST_METHOD']} {environ['PATH_INFO']}")


class _Recorder:
    """Django's handler, remembering whether it was called."""

    def __init__(self):
        self.calls = 0
        self.handler = WSGIHandler()

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.handler(environ, start_response)


@pytest.fixture
def node(client, token, settings):
    settings.NODE_CHALLENGES_PER_HOUR = 0
    body = post(client, "/api/v1/nodes/register", hardware_report(), token).json()
    return body


def _path(node):
    return f"/api/v1/nodes/{node['node_id']}/heartbeat"


def _auth(node):
    return {"HTTP_AUTHORIZATION": f"Bearer {node['node_secret']}"}


def test_a_heartbeat_is_served_without_django_and_brings_the_node_online(node):
    fast = NodeHeartbeatFastPath(_no_django)
    response = wsgi_request(_path(node), json.dumps(BODY).encode(), _auth(node), app=fast)
    assert response.status_code == 200, response.content
    reply = response.json()
    assert reply["status"] == "online" and reply["challenges"] == [] and reply["assignments"] == []
    assert Node.objects.get(id=node["node_id"]).status == NodeStatus.ONLINE  # the first one writes, committed
    assert liveness.last_heartbeats([node["node_id"]])[node["node_id"]]["usage"]["cpu_percent"] == 12.5


def test_a_steady_heartbeat_touches_no_database(node, django_assert_num_queries):
    fast = NodeHeartbeatFastPath(_no_django)
    wsgi_request(_path(node), json.dumps(BODY).encode(), _auth(node), app=fast)  # pending → online
    wsgi_request(_path(node), json.dumps(BODY).encode(), _auth(node), app=fast)  # fills the lease cache
    with django_assert_num_queries(0):
        response = wsgi_request(_path(node), json.dumps({**BODY, "sequence": 3}).encode(), _auth(node), app=fast)
    assert response.status_code == 200


def test_the_reply_and_its_headers_are_the_django_routes(client, node):
    post(client, _path(node), BODY, node["node_secret"])  # online first, so both replies are steady
    django_response = post(client, _path(node), BODY, node["node_secret"])
    fast_response = wsgi_request(
        _path(node), json.dumps(BODY).encode(), _auth(node), app=NodeHeartbeatFastPath(_no_django)
    )
    assert fast_response.status_code == django_response.status_code == 200
    strip = lambda reply: {k: v for k, v in reply.items() if k != "server_time"}  # noqa: E731
    assert strip(fast_response.json()) == strip(django_response.json())
    expected = {k.lower(): v for k, v in django_response.headers.items()}
    assert {k.lower(): v for k, v in fast_response.headers.items()} == expected


@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "no authorization",
        "basic scheme",
        "another node's id",
        "malformed json",
        "invalid field",
        "a list body",
        "oversized",
        "not a number",
    ],
)
def test_every_error_is_django_s_answer(client, node, case):
    path, body, auth = _path(node), json.dumps(BODY), _auth(node)
    if case == "wrong secret":
        auth = {"HTTP_AUTHORIZATION": f"Bearer nsk_{node['node_id']}_wrong"}
    elif case == "no authorization":
        auth = {}
    elif case == "basic scheme":
        auth = {"HTTP_AUTHORIZATION": f"Basic {node['node_secret']}"}
    elif case == "another node's id":
        path = f"/api/v1/nodes/{node['node_id'] + 1}/heartbeat"
    elif case == "malformed json":
        body = '{"sequence": 1,'
    elif case == "invalid field":
        body = json.dumps({**BODY, "sequence": -1})
    elif case == "a list body":
        body = json.dumps([BODY])
    elif case == "oversized":
        body = json.dumps({**BODY, "agent_version": "x" * (70 * 1024)})
    elif case == "not a number":
        body = json.dumps({**BODY, "usage": {"cpu_percent": "12"}})
    recorder = _Recorder()
    fast = wsgi_request(path, body.encode(), auth, app=NodeHeartbeatFastPath(recorder))
    expected = client.post(path, data=body, content_type="application/json", **auth)
    assert recorder.calls == 1  # handed to Django
    assert expected.status_code in (400, 401, 404, 422)
    assert (fast.status_code, fast.json()) == (expected.status_code, expected.json())
    assert not liveness.last_heartbeats([node["node_id"]])  # nothing recorded


def test_other_routes_and_methods_go_to_django(node):
    recorder = _Recorder()
    app = NodeHeartbeatFastPath(recorder)
    response = wsgi_request("/api/v1/nodes/register", json.dumps(hardware_report()).encode(), {}, app=app)
    assert response.status_code == 401 and recorder.calls == 1
    response = wsgi_request(_path(node), b"", _auth(node), app=app, REQUEST_METHOD="GET")
    assert response.status_code == 405 and recorder.calls == 2


def test_a_host_django_refuses_is_refused(node, settings):
    settings.ALLOWED_HOSTS = ["api.spheron.test"]
    recorder = _Recorder()
    response = wsgi_request(
        _path(node), json.dumps(BODY).encode(), _auth(node), app=NodeHeartbeatFastPath(recorder), HTTP_HOST="evil.test"
    )
    assert response.status_code == 400 and recorder.calls == 1
    assert not liveness.last_heartbeats([node["node_id"]])


def test_plain_http_is_redirected_when_https_is_required(node, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    recorder = _Recorder()
    app = NodeHeartbeatFastPath(recorder)
    response = wsgi_request(_path(node), json.dumps(BODY).encode(), _auth(node), app=app)
    assert response.status_code == 301 and recorder.calls == 1
    response = wsgi_request(
        _path(node), json.dumps(BODY).encode(), _auth(node), app=app, **{"wsgi.url_scheme": "https"}
    )
    assert response.status_code == 200 and recorder.calls == 1  # served here, over https
    assert response.headers["Strict-Transport-Security"].startswith("max-age=3600")


@pytest.mark.parametrize("where", ["heartbeat_receive", "node_authenticate_heartbeat"])
def test_an_unexpected_error_is_a_json_500_and_logged(node, monkeypatch, caplog, where):
    def boom(*args, **kwargs):
        raise RuntimeError("cache down")

    monkeypatch.setattr(liveness, where, boom)
    response = wsgi_request(_path(node), json.dumps(BODY).encode(), _auth(node), app=NodeHeartbeatFastPath(_no_django))
    assert response.status_code == 500
    assert response.json() == {"message": "Internal server error.", "extra": {}}
    assert "cache down" in caplog.text


def test_the_production_application_has_the_fast_path_in_front():
    from spheron_web.wsgi import application

    assert isinstance(application, NodeHeartbeatFastPath)
