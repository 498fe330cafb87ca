"""Low-balance alerts: e-mail and a signed webhook, once per threshold crossing.

A user sets thresholds of available credits (USD). `balance_alerts_check` compares the balance with
each: crossing one downward records a `BalanceAlertEvent` and one delivery per channel; the
threshold is then "fired" and stays quiet however low the balance goes, until the balance is back
at or above it (re-armed). The check runs after each settlement and on its own beat.

Webhooks are POSTed as JSON, signed like Stripe's: `Spheron-Signature: t=<unix time>,v1=<hex
HMAC-SHA256(secret, "<t>.<body>")>`. A delivery that fails (network error, timeout, non-2xx) is
tried again with exponential backoff, up to BALANCE_ALERT_MAX_ATTEMPTS. URLs are checked when saved
and again before each attempt: https only and public addresses only, unless DEBUG (where http and
loopback receivers are allowed, for development and tests). Redirects are not followed.

Each attempt resolves the host once, checks every address, and connects to a checked address itself
(the URL's host replaced by the IP; the Host header and, for https, the TLS server name and the
certificate check keep the original host name): the HTTP client never resolves the name again, so a
DNS answer that changes between the check and the connection (DNS rebinding) cannot send the POST
into the server's own network. No proxy from the environment is used.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit, urlunsplit

import certifi
import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q

from accounts.models import User
from billing.models import BalanceAlert, BalanceAlertDelivery, BalanceAlertEvent
from billing.runway import duration_words, user_runway
from core import clock
from core.errors import ApplicationError
from core.money import exact_usd, format_usd

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Spheron-Signature"
EVENT_TYPE = "balance.low"
MAX_THRESHOLDS = 5
MAX_THRESHOLD_MICROS = 1_000_000_000_000  # $1,000,000
SECRET_PREFIX = "sphwhsec_"
SENDING_STALE = timedelta(minutes=5)  # a worker that died mid-send: try again after this


def max_attempts() -> int:
    return int(getattr(settings, "BALANCE_ALERT_MAX_ATTEMPTS", 6))


def retry_base_seconds() -> int:
    return int(getattr(settings, "BALANCE_ALERT_RETRY_BASE_SECONDS", 30))


def webhook_timeout_seconds() -> float:
    return float(getattr(settings, "BALANCE_ALERT_WEBHOOK_TIMEOUT_SECONDS", 5))


def backoff(attempts: int) -> timedelta:
    """After the n-th failed attempt: base × 4^(n-1) (30 s, 2 min, 8 min, 32 min, ~2 h)."""
    return timedelta(seconds=retry_base_seconds() * 4 ** max(0, attempts - 1))


# --- Settings ------------------------------------------------------------------------------------
def _address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def webhook_url_validate(url: str, *, resolve: bool = True) -> str:
    """The URL cleaned, or ApplicationError saying why it cannot receive alerts.

    Outside DEBUG: https only, no credentials in it, and every address its host resolves to must be
    public (no loopback, private, link-local, carrier-grade NAT or reserved ranges: the server must
    not be made to POST into its own network).
    """
    url, parts = _url_parts(url)
    if settings.DEBUG or not resolve:
        return url
    _addresses_checked(parts.hostname or "", parts.port or 443)
    return url


def _url_parts(url: str) -> tuple[str, SplitResult]:
    url = (url or "").strip()
    field = {"field": "webhook_url"}
    if not url:
        raise ApplicationError("Enter the URL that receives the alerts.", field)
    if len(url) > 500 or "\x00" in url or any(ch.isspace() for ch in url):
        raise ApplicationError("The webhook URL is too long or contains spaces.", field)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ApplicationError("The webhook URL is not a valid URL.", field) from None
    allowed_schemes = ("https", "http") if settings.DEBUG else ("https",)
    if parts.scheme not in allowed_schemes:
        raise ApplicationError("The webhook URL must start with https://.", field)
    if not parts.hostname:
        raise ApplicationError("The webhook URL has no host.", field)
    if parts.username or parts.password:
        raise ApplicationError("Put no user name or password in the webhook URL; verify the signature instead.", field)
    return url, parts


def _addresses_checked(host: str, port: int) -> list[str]:
    """The host's addresses, resolved once, in the resolver's order; outside DEBUG each must be public."""
    field = {"field": "webhook_url"}
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise ApplicationError(f"The host {host} could not be found.", field) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ApplicationError(f"The host {host} could not be found.", field)
    if not settings.DEBUG and not all(_address_allowed(address) for address in addresses):
        raise ApplicationError(
            "The webhook URL points to a private or reserved address; alerts go to public hosts only.", field
        )
    return addresses


@dataclass(frozen=True)
class WebhookTarget:
    """Where one attempt connects: the checked addresses of the URL's host, and what the request
    carries so the receiver (and its TLS certificate) still see the host name."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, as in the URL
    port: int
    path: str
    addresses: tuple[str, ...]

    @property
    def host_is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return host if self.port == default_port else f"{host}:{self.port}"

    def pinned_url(self, address: str) -> str:
        """The URL with its host replaced by one checked address: the client connects there, resolving nothing."""
        literal = f"[{address}]" if ":" in address else address
        return urlunsplit((self.scheme, f"{literal}:{self.port}", self.path, "", ""))


def webhook_target_resolve(url: str) -> WebhookTarget:
    """Check the URL and resolve its host once (see the module doc); ApplicationError when it may not be sent to."""
    url, parts = _url_parts(url)
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        raise ApplicationError(
            f"The host {parts.hostname} is not a valid host name.", {"field": "webhook_url"}
        ) from None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    addresses = _addresses_checked(host, port)
    return WebhookTarget(url=url, scheme=parts.scheme, host=host, port=port, path=path, addresses=tuple(addresses))


@dataclass(frozen=True)
class AlertSettingsSaved:
    alert: BalanceAlert
    new_secret: str | None  # shown to the user once, when it was generated


def balance_alert_update(
    *, user: User, thresholds: list[int], email_enabled: bool, webhook_url: str, new_secret: bool = False
) -> AlertSettingsSaved:
    """Save a user's alert settings. A webhook gets a secret generated here when it has none (or on
    `new_secret`); the caller shows it once. A threshold that was removed forgets its state; one
    added is armed, and fires at the next check if the balance is already below it."""
    if any(not isinstance(t, int) or isinstance(t, bool) for t in thresholds):
        raise ApplicationError("Each threshold is an amount above $0 and at most $1,000,000.", {"field": "thresholds"})
    thresholds = sorted(set(thresholds), reverse=True)
    if len(thresholds) > MAX_THRESHOLDS:
        raise ApplicationError(f"Set at most {MAX_THRESHOLDS} thresholds.", {"field": "thresholds"})
    if any(t <= 0 or t > MAX_THRESHOLD_MICROS for t in thresholds):
        raise ApplicationError("Each threshold is an amount above $0 and at most $1,000,000.", {"field": "thresholds"})
    # Resolving the host is network I/O: before the transaction, not inside it.
    webhook_url = webhook_url_validate(webhook_url) if webhook_url.strip() else ""
    with transaction.atomic():
        alert, _ = BalanceAlert.objects.select_for_update().get_or_create(user=user)
        secret = None
        if webhook_url and (new_secret or not alert.webhook_secret):
            secret = _new_secret()
            alert.webhook_secret = secret
        if not webhook_url:
            alert.webhook_secret = ""
        alert.thresholds = thresholds
        alert.fired = [t for t in alert.fired if t in thresholds]
        alert.email_enabled = email_enabled
        alert.webhook_url = webhook_url
        alert.save()
    return AlertSettingsSaved(alert=alert, new_secret=secret)


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def webhook_secret_rotate(*, user: User) -> AlertSettingsSaved:
    """A new signing secret for the user's webhook, returned once; the old one stops signing at once."""
    with transaction.atomic():
        alert = BalanceAlert.objects.select_for_update().filter(user=user).first()
        if alert is None or not alert.webhook_url:
            raise ApplicationError(
                "Set a webhook URL first: the secret signs what is sent to it.", {"field": "webhook_url"}, status=409
            )
        secret = _new_secret()
        alert.webhook_secret = secret
        alert.save(update_fields=["webhook_secret", "updated_at"])
    return AlertSettingsSaved(alert=alert, new_secret=secret)


def alert_events_recent(*, user: User, limit: int = 20) -> list[BalanceAlertEvent]:
    """The user's latest crossings, newest first, each with its deliveries."""
    return list(
        BalanceAlertEvent.objects.filter(user=user)
        .prefetch_related("deliveries")
        .order_by("-created_at", "-id")[:limit]
    )


# --- Checking ------------------------------------------------------------------------------------
def balance_alerts_check(*, user_id: int, now: datetime | None = None) -> list[BalanceAlertEvent]:
    """Fire the thresholds the available balance crossed downward since the last check, once each;
    re-arm those it is back at or above. Deliveries are queued after commit."""
    now = now or clock.now()
    with transaction.atomic():
        alert = BalanceAlert.objects.select_for_update().select_related("user").filter(user_id=user_id).first()
        if alert is None:
            return []
        runway = user_runway(user=alert.user, now=now)
        available = runway.available
        fired = [t for t in alert.fired if t in alert.thresholds and available < t]  # re-armed: the others
        crossed = [t for t in alert.thresholds if available < t and t not in fired]
        events = []
        # One event for the lowest threshold crossed at once: two messages at the same moment
        # tell nothing the lowest one does not; the higher ones are fired too (no later message).
        if crossed:
            lowest = min(crossed)
            event = BalanceAlertEvent.objects.create(
                user=alert.user,
                threshold=lowest,
                available=available,
                spend_per_hour=runway.spend_per_hour,
                runway_seconds=runway.seconds,
                created_at=now,
            )
            channels = []
            if alert.email_enabled and alert.user.email:
                channels.append((BalanceAlertDelivery.Channel.EMAIL, alert.user.email))
            if alert.webhook_url and alert.webhook_secret:
                channels.append((BalanceAlertDelivery.Channel.WEBHOOK, alert.webhook_url))
            deliveries = BalanceAlertDelivery.objects.bulk_create(
                [
                    BalanceAlertDelivery(event=event, channel=channel, target=target, next_attempt_at=now)
                    for channel, target in channels
                ]
            )
            events.append(event)
            ids = [d.id for d in deliveries]
            transaction.on_commit(lambda: _queue_deliveries(ids))
        new_fired = sorted(set(fired) | set(crossed), reverse=True)
        if new_fired != alert.fired:
            BalanceAlert.objects.filter(id=alert.id).update(fired=new_fired)
    return events


def balance_alerts_check_all(*, now: datetime | None = None) -> int:
    """Check every user who set thresholds; returns the crossings fired."""
    user_ids = BalanceAlert.objects.exclude(thresholds=[]).values_list("user_id", flat=True)
    return sum(len(balance_alerts_check(user_id=user_id, now=now)) for user_id in list(user_ids))


def _queue_deliveries(ids: list[int]) -> None:
    from celery import current_app  # queued by name: only Celery imports billing.tasks

    for delivery_id in ids:
        try:
            current_app.send_task("billing.tasks.deliver_balance_alert", args=(delivery_id,), ignore_result=True)
        except Exception:  # the broker is down: the beat's sweep delivers it
            logger.exception("could not queue balance alert delivery %s", delivery_id)


# --- Delivering ----------------------------------------------------------------------------------
def event_payload(event: BalanceAlertEvent) -> dict:
    return {
        "id": f"balert_{event.id}",
        "type": EVENT_TYPE,
        "created": int(event.created_at.timestamp()),
        "data": {
            "threshold": exact_usd(event.threshold),
            "threshold_micros": event.threshold,
            "available": exact_usd(event.available),
            "available_micros": event.available,
            "spend_per_hour": exact_usd(event.spend_per_hour),
            "spend_per_hour_micros": event.spend_per_hour,
            "runway_seconds": event.runway_seconds,
            "billing_url": f"{settings.SITE_URL}/billing/",
        },
    }


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signature_verify(secret: str, body: bytes, header: str, *, tolerance: int = 300, now: int | None = None) -> bool:
    """What a receiver does (documented on the page; used by the tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    now = int(clock.now().timestamp()) if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature_header(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def _claim(delivery_id: int, now: datetime) -> bool:
    """Take a due delivery for one attempt (two workers never send the same one at once)."""
    return (
        BalanceAlertDelivery.objects.filter(id=delivery_id, next_attempt_at__lte=now)
        .filter(Q(status=BalanceAlertDelivery.Status.PENDING) | Q(status=BalanceAlertDelivery.Status.SENDING))
        .exclude(status=BalanceAlertDelivery.Status.SENDING, last_attempt_at__gt=now - SENDING_STALE)
        .update(status=BalanceAlertDelivery.Status.SENDING, attempts=F("attempts") + 1, last_attempt_at=now)
        == 1
    )


def alert_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> BalanceAlertDelivery:
    """One attempt at a due delivery, recorded: sent, or pending again after a backoff, or failed
    after the last attempt. No database transaction is open during the network call."""
    now = now or clock.now()
    if not _claim(delivery_id, now):
        return BalanceAlertDelivery.objects.get(id=delivery_id)
    delivery = BalanceAlertDelivery.objects.select_related("event__user").get(id=delivery_id)
    response_status = None
    try:
        if delivery.channel == BalanceAlertDelivery.Channel.EMAIL:
            _send_email(delivery.event, delivery.target)
        else:
            response_status = _post_webhook(delivery, now=now)
    except _DeliveryError as exc:
        error, response_status = str(exc), exc.status
    except Exception as exc:  # an SMTP outage and the like: tried again
        logger.warning("balance alert delivery %s failed: %s", delivery_id, exc)
        error = f"{type(exc).__name__}: {exc}"
    else:
        BalanceAlertDelivery.objects.filter(id=delivery_id).update(
            status=BalanceAlertDelivery.Status.SENT, delivered_at=now, response_status=response_status, last_error=""
        )
        return BalanceAlertDelivery.objects.get(id=delivery_id)
    attempts = delivery.attempts
    gave_up = attempts >= max_attempts()
    BalanceAlertDelivery.objects.filter(id=delivery_id).update(
        status=BalanceAlertDelivery.Status.FAILED if gave_up else BalanceAlertDelivery.Status.PENDING,
        next_attempt_at=now + backoff(attempts),
        response_status=response_status,
        last_error=error[:500],
    )
    if not gave_up:
        _queue_retry(delivery_id, backoff(attempts))
    return BalanceAlertDelivery.objects.get(id=delivery_id)


def alert_deliveries_due(*, now: datetime | None = None) -> int:
    """The beat's sweep: every delivery due (retries whose queued task was lost, a worker that died)."""
    now = now or clock.now()
    due = BalanceAlertDelivery.objects.filter(
        Q(status=BalanceAlertDelivery.Status.PENDING, next_attempt_at__lte=now)
        | Q(status=BalanceAlertDelivery.Status.SENDING, last_attempt_at__lte=now - SENDING_STALE)
    ).values_list("id", flat=True)
    done = 0
    for delivery_id in list(due[:500]):
        alert_delivery_attempt(delivery_id=delivery_id, now=now)
        done += 1
    return done


def _queue_retry(delivery_id: int, delay: timedelta) -> None:
    from celery import current_app

    try:
        current_app.send_task(
            "billing.tasks.deliver_balance_alert",
            args=(delivery_id,),
            countdown=delay.total_seconds(),
            ignore_result=True,
        )
    except Exception:  # the sweep picks it up
        logger.exception("could not queue the retry of balance alert delivery %s", delivery_id)


class _DeliveryError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _post_webhook(delivery: BalanceAlertDelivery, *, now: datetime) -> int:
    alert = BalanceAlert.objects.filter(user_id=delivery.event.user_id).first()
    if alert is None or not alert.webhook_secret or alert.webhook_url != delivery.target:
        raise _DeliveryError("The webhook was removed or changed since the alert; not sent.")
    try:
        target = webhook_target_resolve(delivery.target)  # again: the host may resolve elsewhere now
    except ApplicationError as exc:
        raise _DeliveryError(exc.message) from None
    body = json.dumps(event_payload(delivery.event), separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": "Spheron-Webhooks/1",
        SIGNATURE_HEADER: signature_header(alert.webhook_secret, body, int(now.timestamp())),
    }
    response = _post_pinned(target, body=body, headers=headers)
    if not 200 <= response.status_code < 300:
        raise _DeliveryError(f"The receiver answered HTTP {response.status_code}.", response.status_code)
    return response.status_code


@lru_cache(maxsize=4)
def _ssl_context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)  # verifies the chain and the host name


def webhook_ssl_context() -> ssl.SSLContext:
    """Certifi's CAs, or the PEM file BALANCE_ALERT_WEBHOOK_CA_FILE names (a private CA)."""
    return _ssl_context(getattr(settings, "BALANCE_ALERT_WEBHOOK_CA_FILE", "") or certifi.where())


def _post_pinned(target: WebhookTarget, *, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to the first checked address that accepts a connection. https: the TLS server name
    (SNI) and the certificate check are the URL's host name, not the address."""
    extensions = {"sni_hostname": target.host} if target.scheme == "https" and not target.host_is_ip else {}
    error = ""
    with httpx.Client(
        verify=webhook_ssl_context(), trust_env=False, follow_redirects=False, timeout=webhook_timeout_seconds()
    ) as client:
        for address in target.addresses:
            try:
                return client.post(target.pinned_url(address), content=body, headers=headers, extensions=extensions)
            except httpx.ConnectError as exc:  # refused or unreachable: the host's next address
                error = f"ConnectionError: could not connect to {target.host} at {address}: {exc}"
            except httpx.TimeoutException as exc:
                raise _DeliveryError(
                    f"Timeout: {target.host} at {address} did not answer in time ({exc})"[:500]
                ) from None
            except httpx.HTTPError as exc:
                raise _DeliveryError(f"{type(exc).__name__}: {exc}"[:500]) from None
    raise _DeliveryError(error[:500])


def _send_email(event: BalanceAlertEvent, address: str) -> None:
    runway = ""
    if event.runway_seconds is not None:
        runway = (
            f"At your current spend of {format_usd(event.spend_per_hour, places=4)}/h, your credits last "
            f"{duration_words(event.runway_seconds)}.\n\n"
        )
    send_mail(
        subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Your balance fell below {format_usd(event.threshold, 2)}",
        message=(
            f"Your available credits are {format_usd(event.available, 2)}, below the alert you set at "
            f"{format_usd(event.threshold, 2)}.\n\n{runway}"
            "Running deployments are stopped with the reason 'insufficient funds' when the credits cannot cover "
            "their next hour. Top up, or turn on auto-reload, at "
            f"{settings.SITE_URL}/billing/\n\n"
            f"You get this once each time the balance crosses the threshold; change alerts at "
            f"{settings.SITE_URL}/billing/alerts/\n"
        ),
        from_email=None,
        recipient_list=[address],
        fail_silently=False,
    )
