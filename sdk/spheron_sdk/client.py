"""A client for the Spheron Web API (/api/v1), over HTTP only (httpx; no Django).

    from spheron_sdk.client import Client

    with Client("https://spheron.example", api_key="sph_…") as api:
        for offer in api.offers.search("gpu_model=rtx4090 vram>=24 uptime>0.98", sort="price"):
            print(offer["node_id"], offer["price_per_hour"])
        created = api.deployments.create(open("spec.yaml").read())
        for line in api.deployments.iter_logs(created["id"], follow=True):
            print(line["line"])

Errors are raised as spheron_sdk.errors exceptions carrying the server's message and fields.
Retries: a 429 and, for reads, a 5xx or a dropped connection are retried `retries` times with
exponential backoff (jittered), waiting what `Retry-After` says when the server says it (a wait
longer than `max_retry_after` is not waited: RateLimited is raised at once). Writes (POST) are
retried only when the server cannot have acted on them: 429, 503, or a connection never made.
List routes are cursor-paged; their `iter_*`/`search`/`list` methods are iterators over every page.

Rate limits: after every answer that carries them, `client.last_rate_limit` holds the server's
`RateLimit-*` headers as a RateLimit (policy, limit, remaining, reset seconds, window); a
RateLimited error carries the same as `.rate_limit`.
"""

from __future__ import annotations

import email.utils
import platform
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast
from urllib.parse import quote, urlencode

import httpx

from spheron_sdk import __version__
from spheron_sdk.api_types import (
    Alerts,
    AutoReload,
    Balance,
    Deployment,
    DeploymentCreated,
    DeploymentEvent,
    LogLine,
    LogPage,
    Offer,
    Payout,
    PayoutBalance,
    PayoutPage,
    ProviderPrices,
    Redeployed,
    Slash,
    SlashDetail,
    Statement,
    StatementMonth,
    Validation,
)
from spheron_sdk.errors import (
    ApiError,
    NetworkError,
    RateLimited,
    ServerError,
    error_for,
)
from spheron_sdk.matching import verify_match
from spheron_sdk.offer_query import OfferQuery, offer_query

USER_AGENT = f"spheron-sdk/{__version__} (python {platform.python_version()})"
TAIL_MAX = 1000  # the logs API's largest `tail`
TERMINAL_STATUSES = frozenset({"closed", "failed"})
JSON = dict[str, Any]


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp() - (now if now is not None else datetime.now(UTC).timestamp())
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


_ITEM = re.compile(r'^\s*(?:"([^"]*)"|([A-Za-z0-9_.:-]+))\s*((?:;\s*[A-Za-z0-9_-]+\s*=\s*[^;,]*)*)\s*$')


def _structured_item(value: str) -> tuple[str, dict[str, str]] | None:
    """The first member of a structured-field list (`"read";q=600;w=60`): its name and parameters."""
    first = value.split(",", 1)[0]
    match = _ITEM.match(first)
    if not match:
        return None
    params = {}
    for part in match.group(3).split(";"):
        if "=" in part:
            key, _eq, raw = part.partition("=")
            params[key.strip()] = raw.strip().strip('"')
    return match.group(1) if match.group(1) is not None else match.group(2), params


def _whole(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


@dataclass(frozen=True)
class RateLimit:
    """What the server said about its rate limit on one answer: the IETF draft's `RateLimit-Policy`
    (`"read";q=600;w=60`) and `RateLimit` (`"read";r=599;t=60`) fields, or the earlier
    `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds). Fields the server did not send are None."""

    policy: str | None
    limit: int | None  # requests per window
    remaining: int | None
    reset: int | None  # seconds until the window ends
    window: int | None  # seconds
    received_at: float  # time.time() when the answer arrived

    @property
    def reset_at(self) -> float | None:
        """When the window ends, as a Unix time."""
        return None if self.reset is None else self.received_at + self.reset

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rate_limit_from_headers(headers: Mapping[str, str], *, now: float | None = None) -> RateLimit | None:
    """The RateLimit of a response's headers; None when it carries none."""
    policy_name = limit = window = remaining = reset = None
    policy = _structured_item(headers.get("RateLimit-Policy") or "")
    if policy is not None:
        policy_name = policy[0]
        limit, window = _whole(policy[1].get("q")), _whole(policy[1].get("w"))
    current = _structured_item(headers.get("RateLimit") or "")
    if current is not None:
        policy_name = policy_name or current[0]
        remaining, reset = _whole(current[1].get("r")), _whole(current[1].get("t"))
    limit = limit if limit is not None else _whole(headers.get("RateLimit-Limit"))
    remaining = remaining if remaining is not None else _whole(headers.get("RateLimit-Remaining"))
    reset = reset if reset is not None else _whole(headers.get("RateLimit-Reset"))
    if policy_name is None and limit is None and remaining is None and reset is None:
        return None
    return RateLimit(
        policy=policy_name,
        limit=limit,
        remaining=remaining,
        reset=reset,
        window=window,
        received_at=time.time() if now is None else now,
    )


class Client:
    """One API server and one API key. Thread-safe as httpx.Client is; close it (or use `with`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self.last_rate_limit: RateLimit | None = None  # of the latest answer that carried RateLimit-* headers
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url + "/api/v1", timeout=timeout, headers=headers, transport=transport
        )
        self.offers = Offers(self)
        self.market = Market(self)
        self.templates = Templates(self)
        self.deployments = Deployments(self)
        self.billing = Billing(self)
        self.chains = Chains(self)
        self.wallets = Wallets(self)
        self.provider = Provider(self)

    # --- plumbing --------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _delay(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter: clients that failed together spread out

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        """One call with the retry policy of the module docstring; the decoded JSON body."""
        method = method.upper()
        read = method in ("GET", "HEAD", "OPTIONS")
        clean = {key: value for key, value in (params or {}).items() if value is not None}
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, path, params=clean or None, json=json)
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if last or not (read or never_sent):
                    raise NetworkError(f"{method} {path}: {type(exc).__name__}: {exc or 'connection failed'}") from exc
                self._sleep(self._delay(attempt))
                continue
            rate_limit = rate_limit_from_headers(response.headers)
            if rate_limit is not None:
                self.last_rate_limit = rate_limit
            if response.status_code < 400:
                if response.status_code == 204 or not response.content:
                    return None
                try:
                    return response.json()
                except ValueError as exc:
                    raise ServerError(f"{method} {path}: the answer is not JSON", status=response.status_code) from exc
            status = response.status_code
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            retryable = status == 429 or status == 503 or (read and status >= 500)
            if retryable and not last and (retry_after is None or retry_after <= self.max_retry_after):
                self._sleep(retry_after if retry_after is not None else self._delay(attempt))
                continue
            raise error_for(status, _body(response), retry_after=retry_after, rate_limit=rate_limit)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params=params, json=body if body is not None else {})

    def pages(self, path: str, params: dict[str, Any], *, items: str = "items") -> Iterator[JSON]:
        """Every item of a cursor-paged route, page after page."""
        cursor: str | None = None
        while True:
            page = self.get(path, **params, cursor=cursor)
            yield from page[items]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def me(self) -> JSON:
        """GET /me: the account (email, name, roles) and this key (label, prefix, scopes, daily cap,
        allowed networks, last used). A bad key raises AuthError."""
        return self.get("/me")

    def whoami(self) -> JSON:
        """`me()` with the server, the key's prefix and the balance (what `sphnctl whoami` shows)."""
        me = self.me()
        key = me.get("key") or {}
        return {
            "server": self.base_url,
            "email": me.get("email"),
            "roles": me.get("roles", []),
            "key_prefix": key.get("prefix") or (self.api_key or "")[:12],
            "scopes": key.get("scopes", []),
            "daily_spend_cap": key.get("daily_spend_cap"),
            "balance": self.billing.balance(),
        }


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


class _Group:
    def __init__(self, client: Client) -> None:
        self._client = client


# --- catalog ---------------------------------------------------------------------------------------


class Offers(_Group):
    """GET /offers and /offers/{id}."""

    def page(self, *, cursor: str | None = None, limit: int | None = None, **filters: Any) -> JSON:
        """One page: {"items": [...], "next_cursor"}. Filters: gpu_model, min_vram_gb, min_gpus,
        region, continent, max_price_per_hour, min_uptime, tier, mode, sort."""
        return self._client.get("/offers", **filters, cursor=cursor, limit=limit)

    def search(
        self,
        query: str | OfferQuery = "",
        *,
        sort: str | None = None,
        page_size: int = 100,
        max_results: int | None = None,
        **filters: Any,
    ) -> Iterator[Offer]:
        """Every listed offer that matches, across pages. `query` is the grammar of
        spheron_sdk.offer_query ('gpu_model=rtx4090 vram>=24 region in [us-east,eu-west]') and `sort`
        its sort (`price-`); raw API filters may be given as keywords too."""
        parsed = query if isinstance(query, OfferQuery) else offer_query(query, sort)
        params = {**parsed.params(), **filters, "limit": page_size}
        found = 0
        for offer in self._client.pages("/offers", params):
            if not parsed.matches(offer):
                continue
            yield cast(Offer, offer)
            found += 1
            if max_results is not None and found >= max_results:
                return

    def get(self, node_id: int) -> JSON:
        return self._client.get(f"/offers/{int(node_id)}")


class Market(_Group):
    """The market board, GPU models and regions."""

    def board(self, **filters: Any) -> list[JSON]:
        return self._client.get("/market", **filters)

    def gpu_models(self) -> list[JSON]:
        return self._client.get("/gpu-models")

    def regions(self) -> list[JSON]:
        return self._client.get("/regions")


class Templates(_Group):
    """/templates: the model store (public). `render` fills a template's variables (or serves a
    Hugging Face model id) and picks the cheapest offer that fits; create the deployment from its
    `pinned_spec` with `deployments.create`."""

    def list(self) -> list[JSON]:
        return self._client.get("/templates")

    def get(self, slug: str) -> JSON:
        return self._client.get(f"/templates/{_segment(slug)}")

    def render(
        self,
        slug: str,
        *,
        env: dict[str, str] | None = None,
        hf_model: str | None = None,
        hf_model_params: str | None = None,
        node_id: int | None = None,
    ) -> JSON:
        """{"spec", "gpu", "estimate", "offer", "pinned_spec", "message"}: `offer` and `pinned_spec`
        are null when nothing fits (`message` says why). Nothing is held or created."""
        body: JSON = {"env": dict(env or {})}
        if hf_model:
            body["hf_model"] = hf_model
        if hf_model_params is not None:
            body["hf_model_params"] = str(hf_model_params)
        if node_id is not None:
            body["node_id"] = int(node_id)
        return self._client.post(f"/templates/{_segment(slug)}/render", body)


def _segment(value: str) -> str:
    """A path segment, percent-encoded: a slug with a slash or a dot-dot cannot reach another route."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..", "") else text  # no dot segments to normalise away


# --- deployments -----------------------------------------------------------------------------------


class Deployments(_Group):
    """/deployments: create, validate (the dry run), list, get, events, close, redeploy, logs, match proof."""

    def create(self, spec: str | dict[str, Any]) -> DeploymentCreated:
        """Holds credits and opens an order. `spec` is the YAML text or its JSON object.
        InsufficientFunds (402) when the hold does not fit; ValidationError lists the spec's problems."""
        return self._client.post("/deployments", {"spec": spec})

    def validate(self, spec: str | dict[str, Any]) -> Validation:
        """The dry run: whether the spec is valid, its estimate and hold, and whether your credits
        cover the hold. Nothing is held or created."""
        return self._client.post("/deployments/validate", {"spec": spec})

    def spec_schema(self) -> JSON:
        return self._client.get("/deployments/spec-schema")

    def page(self, *, status: str | None = None, cursor: str | None = None, limit: int | None = None) -> JSON:
        return self._client.get("/deployments", status=status, cursor=cursor, limit=limit)

    def list(self, *, status: str | None = None, page_size: int = 100) -> Iterator[JSON]:
        """Yours, newest first, every page."""
        return self._client.pages("/deployments", {"status": status, "limit": page_size})

    def get(self, deployment_id: int) -> Deployment:
        return self._client.get(f"/deployments/{int(deployment_id)}")

    def events(self, deployment_id: int) -> list[DeploymentEvent]:
        return self._client.get(f"/deployments/{int(deployment_id)}/events")["items"]

    def close(self, deployment_id: int) -> Deployment:
        return self._client.post(f"/deployments/{int(deployment_id)}/close")

    def redeploy(self, deployment_id: int) -> Redeployed:
        """A deployment pinned to one node (typically after that node failed) deployed again on any
        similar node: a new deployment with the same spec less the pin, answered as `create` answers
        plus `redeployed_from`. The old one is closed if it still runs, in the same transaction.
        Conflict (409) when it is not pinned; InsufficientFunds (402) when the new hold does not fit."""
        return self._client.post(f"/deployments/{int(deployment_id)}/redeploy")

    def match_proof(self, deployment_id: int, *, attempt: int | None = None) -> JSON:
        return self._client.get(f"/deployments/{int(deployment_id)}/match-proof", attempt=attempt)

    def verify(self, deployment_id: int, *, on_chain: bool = False, rpc_url: str | None = None) -> JSON:
        """Fetches the match proof and recomputes the winner and commitment
        (spheron_sdk.matching.verify_match); with `on_chain`, also reads the commitment on chain."""
        proof = self.match_proof(deployment_id)
        if on_chain or rpc_url:
            return verify_match(proof, rpc_url=rpc_url or (proof.get("chain") or {}).get("rpc_url"))
        return verify_match(proof)

    def wait(
        self,
        deployment_id: int,
        *,
        until: frozenset[str] = frozenset({"running"}),
        timeout: float = 600.0,
        poll_interval: float = 2.0,
        on_change: Callable[[Deployment], None] | None = None,
    ) -> Deployment:
        """Polls until the status is in `until` or terminal (closed, failed); TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        seen: str | None = None
        while True:
            deployment = self.get(deployment_id)
            if deployment["status"] != seen:
                seen = deployment["status"]
                if on_change is not None:
                    on_change(deployment)
            if deployment["status"] in until or deployment["status"] in TERMINAL_STATUSES:
                return deployment
            if time.monotonic() >= deadline:
                raise TimeoutError(f"deployment {deployment_id} is still {seen} after {timeout:g} s")
            self._client._sleep(poll_interval)

    def logs(
        self, deployment_id: int, *, after: int | None = None, limit: int | None = None, tail: int | None = None
    ) -> LogPage:
        """One page of log lines, oldest first, with ids greater than `after`; or the last `tail`
        lines (at most 1,000)."""
        return self._client.get(f"/deployments/{int(deployment_id)}/logs", after=after, limit=limit, tail=tail)

    def tail(self, deployment_id: int, lines: int) -> list[LogLine]:
        """The last `lines` lines: one call up to 1,000 (the API's `tail`); more are read from the
        start once."""
        if 0 < lines <= TAIL_MAX:
            return list(self.logs(deployment_id, tail=lines)["lines"])
        kept: deque[LogLine] = deque(maxlen=max(0, lines))
        for line in self.iter_logs(deployment_id):
            kept.append(line)
        return list(kept)

    def iter_logs(
        self,
        deployment_id: int,
        *,
        after: int = 0,
        follow: bool = False,
        poll_interval: float = 2.0,
        page_size: int = 1000,
        max_reconnects: int = 20,
    ) -> Iterator[LogLine]:
        """Every line after the line id `after`, oldest first. With `follow`, keeps polling for new
        lines until the deployment has ended (closed or failed) and its last lines are read. A
        dropped connection or a server error while following is retried from the last line
        yielded, so no line is lost or repeated; after `max_reconnects` failures in a row the error
        is raised."""
        failures = 0
        while True:
            try:
                ended = follow and self.get(deployment_id)["status"] in TERMINAL_STATUSES
                page = self.logs(deployment_id, after=after or None, limit=page_size)
            except (NetworkError, ServerError, RateLimited):
                failures += 1
                if not follow or failures > max_reconnects:
                    raise
                self._client._sleep(self._client._delay(min(failures, 6)))
                continue
            failures = 0
            for line in page["lines"]:
                after = line["id"]
                yield line
            if page["more"]:
                continue
            if not follow or ended:
                return
            self._client._sleep(poll_interval)


# --- money -----------------------------------------------------------------------------------------


class Billing(_Group):
    """/billing: balance, transactions, card top-ups, crypto deposits, low-balance alerts, auto-reload."""

    def balance(self) -> Balance:
        return self._client.get("/billing/balance")

    def transactions(self, *, page_size: int = 100, **filters: Any) -> Iterator[JSON]:
        """Newest first, every page. Filters: kind, date_from, date_to (YYYY-MM-DD)."""
        return self._client.pages("/billing/transactions", {**filters, "limit": page_size})

    def topup(self, amount: str) -> JSON:
        """Starts a card top-up of `amount` USD ("25.00"): a Stripe PaymentIntent to confirm."""
        return self._client.post("/billing/topups", {"amount": str(amount)})

    def topup_page_url(self, amount: str | None = None) -> str:
        """The billing top-up page (card and crypto), with the card amount filled in when given."""
        query = f"?{urlencode({'amount': str(amount)})}" if amount is not None else ""
        return f"{self._client.base_url}/billing/topup/{query}"

    def crypto_page_url(self, *, chain: str, token: str, usd: str) -> str:
        """The top-up page with the amount of `token` to send on `chain` for `usd` worked out, its
        QR code and the wallet button."""
        query = urlencode({"chain": chain, "token": token, "usd": str(usd)})
        return f"{self._client.base_url}/billing/topup/?{query}#pay-{chain.lower()}-{token.lower()}"

    def deposit_instructions(self) -> JSON:
        """Your deposit reference and, per chain and token, where to pay, the rate and the minimum."""
        return self._client.get("/billing/deposits/instructions")

    def deposits(self, *, page_size: int = 100) -> Iterator[JSON]:
        return self._client.pages("/billing/deposits", {"limit": page_size})

    def check_deposit(self, chain: str, tx_hash: str) -> JSON:
        """Reads a transaction from the chain now; a final deposit is credited before this returns."""
        return self._client.post("/billing/deposits/check", {"chain": chain, "tx_hash": tx_hash})

    # Low-balance alerts and card auto-reload (the page /billing/alerts/). Amounts are USD strings.

    def alerts(self) -> Alerts:
        """Thresholds, e-mail on/off, the webhook URL (its secret never), the latest crossings with
        each delivery's status."""
        return self._client.get("/billing/alerts")

    def alerts_update(
        self,
        *,
        thresholds: Iterable[str] | None = None,
        email_enabled: bool | None = None,
        webhook_url: str | None = None,
    ) -> Alerts:
        """Change what is given (None: unchanged). `thresholds`: USD strings ("25", "10.50"), at most
        5, [] for none; `webhook_url` "" removes the webhook. A first webhook URL gets a signing
        secret: `webhook_secret` of this answer, never shown again. The balance is checked at once."""
        body: dict[str, Any] = {}
        if thresholds is not None:
            body["thresholds"] = [str(value) for value in thresholds]
        if email_enabled is not None:
            body["email_enabled"] = email_enabled
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        return self._client.request("PUT", "/billing/alerts", json=body)

    def alerts_rotate_secret(self) -> Alerts:
        """A new webhook signing secret, in `webhook_secret` of this answer only (Conflict without a webhook)."""
        return self._client.post("/billing/alerts/webhook-secret")

    def autoreload(self) -> AutoReload:
        """On/off, threshold, amount, the saved card and the latest reloads. Saving a card needs
        Stripe.js in a browser: open `card_setup_url`."""
        return self._client.get("/billing/autoreload")

    def autoreload_update(
        self, *, enabled: bool | None = None, threshold: str | None = None, amount: str | None = None
    ) -> AutoReload:
        """Change what is given (None: unchanged); USD strings, the amount at least `minimum_amount`.
        Enabling needs a saved card; with the credits already below the threshold the card is
        charged at once and `attempt` says how it went."""
        body: dict[str, Any] = {}
        if enabled is not None:
            body["enabled"] = enabled
        if threshold is not None:
            body["threshold"] = str(threshold)
        if amount is not None:
            body["amount"] = str(amount)
        return self._client.request("PUT", "/billing/autoreload", json=body)

    def autoreload_card_remove(self) -> AutoReload:
        """Forget the saved card; auto-reload turns off."""
        return self._client.request("DELETE", "/billing/autoreload/card")

    # Monthly statements (the pages /billing/statements/). Amounts are USD strings with *_micros twins.

    def statements(self) -> list[StatementMonth]:
        """Every month from your first to this one, newest first: top-ups, usage, other, net."""
        return self._client.get("/billing/statements")

    def statement(self, period: str | tuple[int, int]) -> Statement:
        """One month's statement: `period` is "YYYY-MM" or (year, month). Opening balance, lines
        grouped by type, closing balance. NotFound for a month before your first or after this one."""
        return self._client.get(f"/billing/statements/{_segment(_period_text(period))}")


def _period_text(period: str | tuple[int, int]) -> str:
    if isinstance(period, tuple) and len(period) == 2 and all(type(part) is int for part in period):
        return f"{period[0]:04d}-{period[1]:02d}"
    if isinstance(period, str) and period.strip():
        return period.strip()  # the server checks the form: a ValidationError says what is wrong
    raise ValueError(f'period must be "YYYY-MM" or (year, month), not {period!r}')


class Chains(_Group):
    def list(self) -> list[JSON]:
        return self._client.get("/chains")


class Wallets(_Group):
    """Linked addresses (Sign-In with Ethereum): ask a nonce, sign its message, link."""

    def list(self) -> JSON:
        return self._client.get("/wallets")

    def nonce(self, *, address: str, chain_id: int, purpose: str) -> JSON:
        return self._client.post("/wallets/nonce", {"address": address, "chain_id": chain_id, "purpose": purpose})

    def link(self, *, message: str, signature: str, purpose: str) -> JSON:
        return self._client.post("/wallets", {"message": message, "signature": signature, "purpose": purpose})


# --- providers -------------------------------------------------------------------------------------


class Provider(_Group):
    """/provider: nodes, node tokens, maintenance, rewards, stake, earnings, list prices, payouts,
    slashes and appeals; the public earnings estimate."""

    def nodes(self) -> list[JSON]:
        return self._client.get("/provider/nodes")

    def tokens(self) -> list[JSON]:
        return self._client.get("/provider/tokens")

    def create_token(self, label: str, *, mode: str | None = None, region: str | None = None) -> JSON:
        """A node token for `fizz start --token`; its whole value is in the answer only."""
        body: JSON = {"label": label}
        if mode is not None:
            body["mode"] = mode
        if region is not None:
            body["region"] = region
        return self._client.post("/provider/tokens", body)

    def revoke_token(self, token_id: int) -> JSON:
        return self._client.post(f"/provider/tokens/{int(token_id)}/revoke")

    def maintenance(self, node_id: int, *, on: bool) -> JSON:
        return self._client.post(f"/provider/nodes/{int(node_id)}/maintenance", {"on": bool(on)})

    def node_rewards(self, node_id: int, *, page_size: int = 100) -> Iterator[JSON]:
        """A node's era rewards with receipts, newest era first, every page."""
        return self._client.pages(f"/provider/nodes/{int(node_id)}/rewards", {"limit": page_size})

    def rewards(self, *, limit: int = 10, offset: int = 0) -> JSON:
        """Claimable $SPON, the Merkle proof to claim it, and `limit` eras from `offset`."""
        return self._client.get("/provider/rewards", limit=limit, offset=offset)

    def iter_reward_eras(self, *, page_size: int = 10) -> Iterator[JSON]:
        offset = 0
        while True:
            page = self.rewards(limit=page_size, offset=offset)
            yield from page["eras"]
            offset += len(page["eras"])
            if not page["eras"] or offset >= page["era_count"]:
                return

    def stake(self) -> JSON:
        """Staked $SPON, what your nodes need, the shortfall, uncovered nodes and the latest changes."""
        return self._client.get("/provider/stake")

    def earnings(self, *, days: int | None = None, node: int | None = None) -> JSON:
        """Earnings per UTC day over the `days` (1–90, default 30) ending today: rental, $SPON
        rewards, floor top-ups and slashes, with totals; `node`: one node of yours."""
        return self._client.get("/provider/earnings", days=days, node=node)

    # List prices of provider-mode nodes (the page /provider/prices/). Prices are USD strings.

    def prices(self) -> ProviderPrices:
        """Your USD per GPU-hour for every model of the catalog (None: not offered) and per
        core-month and GB-month, each with the Fizz price for reference."""
        return self._client.get("/provider/prices")

    def prices_update(
        self,
        gpu_prices: Mapping[str, str | Decimal | None],
        *,
        cpu_per_core_month: str | Decimal,
        memory_per_gb_month: str | Decimal,
        storage_per_gb_month: str | Decimal,
    ) -> ProviderPrices:
        """Replaces every list price at once: a GPU model left out of `gpu_prices` (or None, or "")
        is no longer offered. A bad price is a ValidationError naming its field (`gpu_prices.<slug>`,
        `cpu_per_core_month`, ...) and nothing is written. To change some prices, see `prices_patch` and `price_set`."""
        body = {
            "gpu_prices": {slug: None if price is None else str(price) for slug, price in gpu_prices.items()},
            "cpu_per_core_month": str(cpu_per_core_month),
            "memory_per_gb_month": str(memory_per_gb_month),
            "storage_per_gb_month": str(storage_per_gb_month),
        }
        return self._client.request("PUT", "/provider/prices", json=body)

    def prices_patch(
        self,
        gpu_prices: Mapping[str, str | Decimal | None] | None = None,
        *,
        cpu_per_core_month: str | Decimal | None = None,
        memory_per_gb_month: str | Decimal | None = None,
        storage_per_gb_month: str | Decimal | None = None,
    ) -> ProviderPrices:
        """Changes only the prices given (PATCH; a GPU model's None: no longer offered); every other
        price is kept. The server changes them under a lock, so two changes at once both land."""
        body: dict[str, Any] = {}
        if gpu_prices:
            body["gpu_prices"] = {slug: None if price is None else str(price) for slug, price in gpu_prices.items()}
        units = {
            "cpu_per_core_month": cpu_per_core_month,
            "memory_per_gb_month": memory_per_gb_month,
            "storage_per_gb_month": storage_per_gb_month,
        }
        body.update({name: str(value) for name, value in units.items() if value is not None})
        return self._client.request("PATCH", "/provider/prices", json=body)

    def price_set(self, gpu_model: str, price: str | Decimal | None) -> ProviderPrices:
        """One GPU model's USD per GPU-hour (None: no longer offered), every other price kept."""
        return self.prices_patch({gpu_model: price})

    def unit_prices_set(
        self,
        *,
        cpu_per_core_month: str | Decimal | None = None,
        memory_per_gb_month: str | Decimal | None = None,
        storage_per_gb_month: str | Decimal | None = None,
    ) -> ProviderPrices:
        """The per core-month and GB-month prices given (None: unchanged), every GPU price kept."""
        return self.prices_patch(
            cpu_per_core_month=cpu_per_core_month,
            memory_per_gb_month=memory_per_gb_month,
            storage_per_gb_month=storage_per_gb_month,
        )

    # Payouts of settled rental earnings (the page /billing/earnings/).

    def payouts_page(self, *, cursor: str | None = None, limit: int | None = None) -> PayoutPage:
        """One page of your payout requests (newest first) with `balance`: what you may request now."""
        return self._client.get("/provider/payouts", cursor=cursor, limit=limit)

    def payouts(self, *, page_size: int = 100) -> Iterator[Payout]:
        """Your payout requests, newest first, every page."""
        return self._client.pages("/provider/payouts", {"limit": page_size})

    def payout_balance(self) -> PayoutBalance:
        """Settled, requested and payable USD, the minimum, the approval threshold, your payout address."""
        return self.payouts_page(limit=1)["balance"]

    def payout_request(self, amount: str | Decimal, chain: str, token: str = "native") -> Payout:
        """A payout of `amount` USD ("25.00") of settled earnings to your linked payout address, on
        the EVM chain `chain` (a key of `chains.list()`), in its native coin or "SPON". Up to the
        approval threshold it is approved at once, above it an admin approves it. Conflict (409)
        above what is payable (`extra.payable_micros`) or without a payout address (`extra.link`)."""
        return self._client.post("/provider/payouts", {"amount": str(amount), "chain": chain, "token": token})

    # Slashes of your stake and their appeals (the page /provider/stake/).

    def slashes(self, *, page_size: int = 100) -> Iterator[Slash]:
        """Your slashes with status, transaction and appeal, newest first, every page."""
        return self._client.pages("/provider/slashes", {"limit": page_size})

    def slash(self, slash_id: int) -> SlashDetail:
        """One of your slashes with the evidence it was decided on (another's: NotFound)."""
        return self._client.get(f"/provider/slashes/{int(slash_id)}")

    def slash_appeal(self, slash_id: int, text: str) -> Slash:
        """Appeal an applied slash, once, with why it is wrong (1 to 2,000 characters); an admin
        upholds or dismisses it. Answers the slash with its appeal."""
        return self._client.post(f"/provider/slashes/{int(slash_id)}/appeal", {"text": text})

    def earnings_estimate(self, **params: Any) -> JSON:
        """The earnings calculator: gpu, tier, uptime, utilization (required), count, cores, mode, price."""
        return self._client.get("/providers/earnings-estimate", **params)


__all__ = ["ApiError", "Client", "RateLimit", "rate_limit_from_headers", "retry_after_seconds"]
