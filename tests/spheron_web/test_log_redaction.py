"""No credential reaches a log: with DEBUG on and every logger at DEBUG, failed authentications in
every scheme and place, and log lines that quote credentials themselves, leave no secret in what
the configured handlers write."""

from __future__ import annotations

import base64
import io
import logging
import uuid

import pytest
from django.test import Client

from accounts.api_keys import api_key_create
from core.log_redaction import RedactSecretsFilter, redact
from providers import services
from tests.factories import make_provider, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def log_output(settings, caplog):
    """Everything the configured handlers write, with the root logger and every logger at DEBUG."""
    settings.DEBUG = True
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"l-{uuid.uuid4()}"}
    }
    buffer = io.StringIO()
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    saved_levels = [(logger, logger.level) for logger in loggers]
    handlers = {
        handler
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler) and not type(handler).__module__.startswith("_pytest")
    }
    saved_streams = [(handler, handler.setStream(buffer)) for handler in handlers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        yield buffer
    finally:
        for handler, stream in saved_streams:
            handler.setStream(stream)
        for logger, level in saved_levels:
            logger.setLevel(level)


def test_every_configured_handler_redacts():
    handlers = {handler for name in ("", "django", "django.server") for handler in logging.getLogger(name).handlers}
    handlers = {handler for handler in handlers if not type(handler).__module__.startswith("_pytest")}
    assert handlers
    for handler in handlers:
        assert any(isinstance(f, RedactSecretsFilter) for f in handler.filters), handler
    # Django's own default handlers are not left on its loggers (they have no such filter).
    assert logging.getLogger("django").handlers == []


def test_failed_authentications_leave_no_secret_in_the_log(client: Client, log_output, caplog):
    user = make_user(is_developer=True)
    _key, api_key = api_key_create(user=user, label="ci")
    _token, node_token = services.node_token_create(provider=make_provider(), label="rig")
    node_secret = "nsk_42_" + "S3cr3t-" * 6
    stripe_key = "sk_live_" + "A1b2C3d4" * 4
    basic = base64.b64encode(f"admin:{api_key}".encode()).decode()
    secrets = [api_key, node_token, node_secret, stripe_key, basic, "opaque-Credential-9f8e7d6c5b4a"]

    attempts = [
        ("/api/v1/billing/balance", {"HTTP_AUTHORIZATION": f"Token {api_key}"}),
        ("/api/v1/billing/balance", {"HTTP_AUTHORIZATION": f"Basic {basic}"}),
        ("/api/v1/billing/balance", {"HTTP_AUTHORIZATION": "Digest opaque-Credential-9f8e7d6c5b4a"}),
        ("/api/v1/billing/balance", {"HTTP_AUTHORIZATION": f"Bearer {api_key}x"}),
        ("/api/v1/billing/balance", {"HTTP_AUTHORIZATION": api_key}),
        (f"/api/v1/billing/balance?api_key={api_key}&token={node_token}", {}),
        ("/api/v1/billing/balance", {"HTTP_X_API_KEY": api_key, "HTTP_COOKIE": f"sessionid={stripe_key}"}),
        ("/api/v1/provider/nodes", {"HTTP_AUTHORIZATION": f"Token {node_token}"}),
    ]
    for path, headers in attempts:
        assert client.get(path, **headers).status_code == 401
    for scheme in ("Token", "Basic", "Bearer", "bearer"):
        for credential in (node_token, node_secret):
            client.post(
                "/api/v1/nodes/register" if credential is node_token else "/api/v1/nodes/42/heartbeat",
                data={"agent_version": "0.1.0"},
                content_type="application/json",
                HTTP_AUTHORIZATION=f"{scheme} {credential}",
            )

    # Code that logs a credential itself, in a message, its arguments or a traceback.
    logger = logging.getLogger("spheron.test")
    logger.warning("retrying with Authorization: Bearer %s", api_key)
    logger.info("agent config %s", {"token": node_token, "secret": node_secret, "stripe": stripe_key})
    try:
        raise ValueError(f"could not use {node_secret}")
    except ValueError:
        logger.exception("failed")

    written = log_output.getvalue()
    assert "Unexpected auth" not in written or "[redacted]" in written
    assert "[redacted]" in written  # the lines themselves are still there
    for secret in secrets:
        assert secret not in written, secret
        assert secret[:20] not in written, secret
        assert secret not in caplog.text, secret


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("The node token was not accepted: it is wrong or has been revoked.", True),
        ("Token “rig-1” (fzt_abc…) is revoked.", True),
        ("Basic information about node 12", True),
        ("Authorization: Bearer abcdefghijklmnop", False),
        ("Unexpected auth - 'Token x'y'", False),
    ],
)
def test_redaction_keeps_ordinary_lines(line, kept):
    assert (redact(line) == line) is kept
