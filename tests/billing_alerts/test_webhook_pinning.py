"""Webhook DNS pinning: each attempt resolves the receiver's host once, checks every address, and
connects to that address itself; the Host header, the TLS server name and the certificate check keep
the host name. The resolver is replaced at its boundary (socket.getaddrinfo) and, where a public
address must be reached offline, the route to it (socket.create_connection) leads to a real local
receiver."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from billing.alerts import SIGNATURE_HEADER, alert_delivery_attempt, balance_alert_update, balance_alerts_check
from billing.models import BalanceAlertDelivery
from billing.services import hold_place
from tests.billing_alerts.conftest import T0, USD, fund
from tests.billing_alerts.receiver import webhook_receiver

HOST = "hooks.example.test"
PUBLIC_IP = "93.184.215.14"
_real_getaddrinfo = socket.getaddrinfo
_real_create_connection = socket.create_connection


def _info(address: str, port: int) -> tuple:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))


@dataclass
class FakeDns:
    """Answers for HOST: `answers` in turn, then `later` for every further lookup (a rebinding DNS)."""

    answers: list[list[str]] = field(default_factory=list)
    later: list[str] = field(default_factory=list)
    lookups: int = 0

    def getaddrinfo(self, host, port, *args, **kwargs):
        if host != HOST:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        self.lookups += 1
        addresses = self.answers.pop(0) if self.answers else self.later
        return [_info(address, int(port)) for address in addresses]


@pytest.fixture
def dns(monkeypatch) -> FakeDns:
    fake = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


def _one_alert_due(renter, url: str) -> BalanceAlertDelivery:
    fund(renter, 12 * USD)
    balance_alert_update(user=renter, thresholds=[10 * USD], email_enabled=False, webhook_url=url)
    hold_place(user=renter, amount=4 * USD, reference_type="test", reference_id="pin")
    balance_alerts_check(user_id=renter.id, now=T0)
    return BalanceAlertDelivery.objects.get()


def test_the_post_goes_to_the_address_checked_not_to_a_second_lookup(renter, settings, dns):
    """DEBUG (http, loopback allowed): the name resolves to the receiver's 127.0.0.1 once, and to
    127.0.0.2 (nothing listens there) on any later lookup. Only a pinned connection arrives."""
    settings.DEBUG = True
    with webhook_receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
        dns.answers, dns.later = [["127.0.0.1"]], ["127.0.0.2"]
        delivery = _one_alert_due(renter, f"http://{HOST}:{port}/hooks/spheron?src=x")
        assert dns.lookups == 0  # DEBUG saves the URL without resolving it
        delivery = alert_delivery_attempt(delivery_id=delivery.id, now=T0)
    assert (delivery.status, delivery.response_status) == ("sent", 200), delivery.last_error
    assert dns.lookups == 1
    (request,) = receiver.requests
    assert request.path == "/hooks/spheron?src=x"
    assert request.headers["host"] == f"{HOST}:{port}"
    assert json.loads(request.body)["type"] == "balance.low"


def test_the_next_checked_address_is_tried_when_one_refuses(renter, settings, dns):
    settings.DEBUG = True
    with webhook_receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
        dns.answers, dns.later = [["127.0.0.2", "127.0.0.1"]], ["127.0.0.2"]
        delivery = _one_alert_due(renter, f"http://{HOST}:{port}/hook")
        delivery = alert_delivery_attempt(delivery_id=delivery.id, now=T0)
    assert delivery.status == "sent", delivery.last_error
    assert len(receiver.requests) == 1 and dns.lookups == 1


@dataclass
class Network:
    """Every TCP connection opened, by address; `routes[port]` leads PUBLIC_IP:port to that loopback port."""

    opened: list[tuple[str, int]] = field(default_factory=list)
    routes: dict[int, int] = field(default_factory=dict)

    def create_connection(self, address, *args, **kwargs):
        host, port = address[0], int(address[1])
        self.opened.append((host, port))
        if host == PUBLIC_IP and port in self.routes:
            return _real_create_connection(("127.0.0.1", self.routes[port]), *args, **kwargs)
        return _real_create_connection(address, *args, **kwargs)

    def to_port(self, port: int) -> list[tuple[str, int]]:
        return [item for item in self.opened if item[1] == port]


@pytest.fixture
def network(monkeypatch) -> Network:
    fake = Network()
    monkeypatch.setattr(socket, "create_connection", fake.create_connection)
    return fake


@pytest.mark.parametrize(
    "at_send_time",
    [["10.0.0.7"], ["127.0.0.1"], [PUBLIC_IP, "192.168.1.20"], ["::ffff:169.254.169.254"]],
    ids=["private", "loopback", "one-of-two-private", "mapped-metadata"],
)
def test_a_host_public_when_saved_and_private_at_send_time_is_refused_without_connecting(
    renter, settings, dns, network, at_send_time
):
    settings.DEBUG = False
    dns.answers, dns.later = [[PUBLIC_IP]], at_send_time  # saved: public; every later lookup: private
    delivery = _one_alert_due(renter, f"https://{HOST}/hook")
    assert dns.lookups == 1  # checked when saved
    delivery = alert_delivery_attempt(delivery_id=delivery.id, now=T0)
    assert delivery.status == "pending" and "private or reserved" in delivery.last_error
    assert dns.lookups == 2
    assert network.to_port(443) == []  # refused before any connection


# --- https: SNI and the certificate of the host name, on a connection to the checked IP ---------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A test CA and two server certificates it signed: for HOST and for another name."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command makes this test's certificates; install it")
    where = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Pin Test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=where)  # fmt: skip
    for name in (HOST, "other.example.test"):
        (where / f"{name}.ext").write_text(
            f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=where)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=where)  # fmt: skip
    return where


@dataclass
class TlsReceiver:
    port: int
    server_names: list[str | None] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@contextmanager
def tls_receiver(cert: Path, key: Path) -> Iterator[TlsReceiver]:
    state: dict[str, TlsReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state["receiver"].requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: state["receiver"].server_names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state["receiver"] = TlsReceiver(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()


def test_https_connects_to_the_checked_ip_with_the_host_name_for_sni_and_the_certificate(
    renter, settings, dns, network, certificates
):
    settings.DEBUG = False
    settings.BALANCE_ALERT_WEBHOOK_CA_FILE = str(certificates / "ca.pem")
    with tls_receiver(certificates / f"{HOST}.pem", certificates / f"{HOST}.key") as receiver:
        network.routes[443] = receiver.port
        # Saved and sent: public; any lookup after the send-time check: loopback (a rebinding DNS).
        dns.answers, dns.later = [[PUBLIC_IP], [PUBLIC_IP]], ["127.0.0.1"]
        delivery = _one_alert_due(renter, f"https://{HOST}/hooks/spheron")
        secret = renter.balance_alert.webhook_secret
        delivery = alert_delivery_attempt(delivery_id=delivery.id, now=T0)
    assert (delivery.status, delivery.response_status) == ("sent", 204), delivery.last_error
    assert dns.lookups == 2  # once when saved, once for the attempt: the client resolved nothing
    assert network.to_port(443) == [(PUBLIC_IP, 443)]
    assert receiver.server_names == [HOST]
    ((headers, body),) = receiver.requests
    assert headers["host"] == HOST
    assert SIGNATURE_HEADER.lower() in headers and json.loads(body)["id"].startswith("balert_")
    assert secret.startswith("sphwhsec_")


def test_https_refuses_a_certificate_that_is_not_for_the_host_name(renter, settings, dns, network, certificates):
    settings.DEBUG = False
    settings.BALANCE_ALERT_WEBHOOK_CA_FILE = str(certificates / "ca.pem")
    with tls_receiver(certificates / "other.example.test.pem", certificates / "other.example.test.key") as receiver:
        network.routes[443] = receiver.port
        dns.later = [PUBLIC_IP]
        delivery = _one_alert_due(renter, f"https://{HOST}/hooks/spheron")
        delivery = alert_delivery_attempt(delivery_id=delivery.id, now=T0)
    assert delivery.status == "pending"
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.last_error and HOST in delivery.last_error
    assert receiver.requests == []


def test_https_refuses_a_certificate_from_an_unknown_authority(renter, settings, dns, network, certificates):
    settings.DEBUG = False  # certifi's CAs: the test CA is not among them
    with tls_receiver(certificates / f"{HOST}.pem", certificates / f"{HOST}.key") as receiver:
        network.routes[443] = receiver.port
        dns.later = [PUBLIC_IP]
        delivery = _one_alert_due(renter, f"https://{HOST}/hooks/spheron")
        delivery = alert_delivery_attempt(delivery_id=delivery.id, now=T0)
    assert delivery.status == "pending" and "CERTIFICATE_VERIFY_FAILED" in delivery.last_error
    assert receiver.requests == []
