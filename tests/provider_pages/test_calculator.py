"""The earnings calculator: /provider/calculator/ (page, htmx fragment, no-JS GET), the onboarding
page's copy, and GET /api/v1/providers/earnings-estimate. Expected figures are worked out here
from the stated assumptions: protocol-facts' formula and prices, the settings' 7% Fizz fee and
5% provider fee, 100,000 $SPON an era shared by the assumed 1,000,000 points (0.1 $SPON a point).
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.utils import timezone

from chain.models import Rate
from providers.models import NodeStatus
from tests.factories import make_node, make_user

pytestmark = pytest.mark.django_db

API = "/api/v1/providers/earnings-estimate"
PAGE = "/provider/calculator/"
EXAMPLE = {"gpu": "rtx4090", "count": "1", "tier": "4", "uptime": "95", "utilization": "60", "mode": "fizz"}
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "div#calculator-result"}

# The worked example: an RTX 4090 (Medium 1, multiplier 1) in trust tier 4 at 95% uptime and 60% utilization.
POINTS = Decimal(500) * Decimal("1.2") * (1 + Decimal("0.5") * Decimal("0.6"))  # k × trust × (1 + bonus × util)
SPON_PER_POINT = Decimal(100_000) / Decimal(1_000_000)
SPON_MONTH = POINTS * 730 / 24 * SPON_PER_POINT  # 730 h ÷ 24 h eras
RATE = Decimal("0.05")
LEASED_HOURS = 730 * Decimal("0.95") * Decimal("0.6")
GROSS = Decimal("0.175") * LEASED_HOURS  # the Fizz price of an RTX 4090
FEE = GROSS * Decimal("0.07")


def usd6(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.000001")))


@pytest.fixture(autouse=True)
def _known_parameters(settings):
    settings.PLATFORM_FEE_FIZZ = Decimal("0.07")
    settings.PLATFORM_FEE_PROVIDER = Decimal("0.05")
    settings.REWARD_ERA_EMISSION_SPON = Decimal(100_000)


@pytest.fixture
def spon_rate():
    return Rate.objects.create(symbol="SPON", usd_per_unit=RATE, at=timezone.now(), source="test")


# --- The API -------------------------------------------------------------------------------------


def test_the_worked_example_as_json(client, spon_rate):
    assert POINTS == 780
    response = client.get(API, EXAMPLE)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["points_per_era"] == "780"
    assert body["spon_per_point"] == "0.1" and body["spon_per_point_source"] == "assumed"
    assert "1,000,000 points" in body["spon_per_point_assumption"]
    assert Decimal(body["spon_per_month"]) == SPON_MONTH == Decimal("2372.5")
    assert body["spon_per_month"] == "2372.5"
    assert body["spon_usd_rate"] == "0.05"
    assert body["spon_usd_per_month"] == usd6(SPON_MONTH * RATE) == "118.625000"
    assert body["rental_price_per_hour"] == "0.175000" and body["rental_price_source"] == "fizz"
    assert Decimal(body["leased_hours"]) == LEASED_HOURS
    assert body["rental_gross"] == usd6(GROSS) == "72.817500"
    assert body["platform_fee_rate"] == "0.07" and body["platform_fee"] == usd6(FEE) == "5.097225"
    assert body["rental_net"] == usd6(GROSS - FEE) == "67.720275"
    assert body["total_usd"] == usd6(GROSS - FEE + SPON_MONTH * RATE)
    assert body["formulas"]["points"].endswith("= 780 points an era")
    assert "× trust 1.2 (tier 4)" in body["formulas"]["points"]
    assert body["receipt"]["points"] == "780" and body["receipt"]["trust"]["tier"] == 4


def test_the_api_needs_no_login_and_documents_itself(client):
    assert client.get(API, EXAMPLE).status_code == 200
    schema = client.get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/providers/earnings-estimate"]["get"]
    assert operation["operationId"] == "provider_earnings_estimate"
    assert {p["name"] for p in operation["parameters"]} >= {"gpu", "count", "tier", "uptime", "utilization", "mode"}
    assert "400" in operation["responses"]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"uptime": "150"}, "uptime", "A percentage from 0 to 100"),
        ({"utilization": "-1"}, "utilization", "A percentage from 0 to 100"),
        ({"uptime": "NaN"}, "uptime", "A percentage from 0 to 100"),
        ({"tier": "9"}, "tier", "A trust tier from 1 to 7"),
        ({"tier": "0"}, "tier", "A trust tier from 1 to 7"),
        ({"tier": "2"}, "tier", "Fizz nodes reach tier 4 at best"),
        ({"gpu": "rtx9999"}, "gpu", "Not a machine of the catalog"),
        ({"gpu": "rtx4090\x00"}, "gpu", "Not a machine of the catalog"),
        ({"uptime": "95\x00"}, "uptime", "Null characters are not allowed"),
        ({"count": "2"}, "count", "A Fizz node has one GPU"),
        ({"count": "9" * 20}, "count", "A GPU count from 1 to 64"),
        ({"count": "9" * 70}, "request", ""),  # past the query's 64 characters: ninja's own 422
        ({"uptime": "1e999999999"}, "uptime", "A percentage from 0 to 100"),
        ({"mode": "cloud"}, "mode", "Mode: fizz or provider"),
        ({"mode": "provider", "price": "-1"}, "price", "A price in USD above 0"),
        ({"mode": "provider", "price": "1e3"}, "price", "A price in USD above 0"),
        ({"gpu": "cpu-hpc"}, "cores", "How many CPU cores"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(client, overrides, field, message):
    started = time.process_time()
    response = client.get(API, EXAMPLE | overrides)
    assert time.process_time() - started < 0.5
    assert response.status_code in (400, 422), response.content
    body = response.json()
    if field == "request":
        assert response.status_code == 422 and body["extra"]["errors"][0]["field"] == "count"
        return
    assert response.status_code == 400
    errors = [(error["field"], error["message"]) for error in body["extra"]["errors"]]
    assert any(name == field and message in text for name, text in errors), body
    assert message in body["message"]


def test_a_missing_parameter_is_a_4xx(client):
    response = client.get(API, {"gpu": "rtx4090"})
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["extra"]["errors"]} >= {"tier", "uptime", "utilization"}


def test_tier_7_earns_no_spon_and_says_why(client, spon_rate):
    body = client.get(API, EXAMPLE | {"tier": "7"}).json()
    assert body["points_per_era"] == "0" and body["spon_per_month"] == "0" and body["spon_usd_per_month"] == "0.000000"
    assert body["total_usd"] == body["rental_net"] == usd6(GROSS - FEE)
    assert any("New nodes start in tier 7" in note and "until promoted" in note for note in body["notes"])


def test_without_a_spon_rate_spon_is_in_tokens_only(client):
    body = client.get(API, EXAMPLE).json()
    assert body["spon_per_month"] == "2372.5"
    assert body["spon_usd_rate"] is None and body["spon_usd_per_month"] is None
    assert body["no_rate_reason"] == "No SPON rate is known yet."
    assert body["total_usd"] == usd6(GROSS - FEE)
    assert "no USD rate" in body["formulas"]["total"]


def test_a_stale_rate_counts_as_none(client, settings):
    Rate.objects.create(
        symbol="SPON",
        usd_per_unit=RATE,
        at=timezone.now() - timezone.timedelta(seconds=settings.CHAIN_RATE_MAX_AGE_SECONDS + 60),
    )
    body = client.get(API, EXAMPLE).json()
    assert body["spon_usd_per_month"] is None and "older than" in body["no_rate_reason"]


def test_provider_mode_at_a_typed_price_with_several_gpus(client, spon_rate):
    body = client.get(API, EXAMPLE | {"mode": "provider", "count": "4", "price": "0.30", "tier": "2"}).json()
    # 4 GPUs × 500 × 1.7 (tier 2) × 1.3 = 4,420 points.
    assert body["points_per_era"] == "4420"
    gross = Decimal("0.30") * 4 * LEASED_HOURS
    assert body["rental_price_per_hour"] == "1.200000" and body["rental_price_source"] == "yours"
    assert body["rental_gross"] == usd6(gross) and body["platform_fee"] == usd6(gross * Decimal("0.05"))


def test_fizz_mode_ignores_a_typed_price_and_says_so(client):
    body = client.get(API, EXAMPLE | {"price": "0.99"}).json()
    assert body["rental_price_per_hour"] == "0.175000" and body["rental_price_source"] == "fizz"
    assert any("a typed price counts in provider mode only" in note for note in body["notes"])


def test_provider_mode_defaults_to_the_markets_median_price(client, spon_rate):
    nodes = [make_node(gpu_price_per_hour_micros=price) for price in (200_000, 300_000, 900_000)]
    make_node(gpu_price_per_hour_micros=10_000, status=NodeStatus.OFFLINE)  # not listed: not in the median
    middle = sorted(n.price_per_hour_micros for n in nodes)[1]  # one GPU each: price per GPU-hour
    body = client.get(API, EXAMPLE | {"mode": "provider"}).json()
    assert body["rental_price_source"] == "market_median"
    assert Decimal(body["rental_price_per_hour"]) == Decimal(middle) / 10**6


def test_provider_mode_without_offers_falls_back_to_the_fizz_price(client):
    body = client.get(API, EXAMPLE | {"mode": "provider", "gpu": "h100"}).json()
    # H100: Ultra High 2, multiplier 12: $0.175 × 12 = $2.10 an hour; 500 × 12 × 1.2 × 1.3 = 9,360 points.
    assert body["rental_price_source"] == "fizz_fallback" and body["rental_price_per_hour"] == "2.100000"
    assert body["points_per_era"] == "9360"


def test_a_cpu_only_machine_counts_its_cores(client):
    body = client.get(API, EXAMPLE | {"gpu": "cpu-hpc", "cores": "16", "tier": "6", "utilization": "100"}).json()
    # 16 cores × 1.0 (CPU HPC) × 25 × 1.0 (tier 6) × 1.5 (fully leased) = 600 points.
    assert body["points_per_era"] == "600" and body["inputs"]["cores"] == 16
    assert body["rental_price_per_hour"] == "0.016438"  # 16 × $0.75 a month ÷ 730 h


def test_below_half_uptime_earns_no_points(client):
    body = client.get(API, EXAMPLE | {"uptime": "49.9"}).json()
    assert body["points_per_era"] == "0" and "uptime 49.9% < 50%" in body["formulas"]["points"]


# --- The page ------------------------------------------------------------------------------------


def test_anonymous_visitors_get_the_page_with_the_onboarding_example(client):
    response = client.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="calculator-form"' in page and 'id="calculator-result"' in page
    assert 'value="rtx4090" selected' in page and 'name="tier" value="7"' in page
    assert 'data-testid="tier7-note"' in page and "earn no $SPON rewards until promoted" in page
    assert "Become a provider" in page


def test_a_plain_get_without_javascript_shows_the_figures_in_the_page(client, spon_rate):
    response = client.get(PAGE, EXAMPLE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "<html" in page and 'name="uptime" value="95"' in page
    assert '<td class="num">780</td>' in page
    assert "2,372.5 $SPON" in page and '<td class="num">$118.625</td>' in page
    assert '<strong data-testid="calculator-total">$186.35</strong>' in page  # $186.345275
    assert "= 780 points an era" in page and "$72.8175 × 7% = $5.097225" in page
    assert 'data-testid="tier7-note"' not in page and 'data-testid="no-spon-rate"' not in page


def test_htmx_gets_only_the_result_fragment(client, spon_rate):
    response = client.get(PAGE, EXAMPLE, **HTMX)
    assert response.status_code == 200
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<div id="calculator-result"') and "<html" not in fragment
    assert "calculator-form" not in fragment and '<td class="num">780</td>' in fragment
    assert "HX-Request" in response["Vary"]


def test_bad_input_shows_the_error_in_the_page_and_the_fragment(client):
    page = client.get(PAGE, EXAMPLE | {"uptime": "150", "tier": "9"})
    assert page.status_code == 400
    text = page.content.decode()
    assert 'data-testid="calc-error-uptime"' in text and "A percentage from 0 to 100." in text
    assert 'data-testid="calc-error-tier"' in text and 'data-testid="calculator-errors"' in text
    fragment = client.get(PAGE, EXAMPLE | {"gpu": "nope\x00" * 100}, **HTMX)
    # The fragment is the error message itself: swapped in (200), as the form is typed into.
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()
    assert 'data-testid="calculator-errors"' in fragment.content.decode()
    assert "Machine: Not a machine of the catalog" in fragment.content.decode()


def test_without_a_rate_the_page_says_why(client):
    page = client.get(PAGE, EXAMPLE).content.decode()
    assert 'data-testid="no-spon-rate"' in page and "No SPON rate is known yet." in page
    assert "$67.72 + 2,372.5 $SPON" in page


def test_the_onboarding_page_includes_the_calculator(client):
    client.force_login(make_user(is_developer=True))
    page = client.get("/provider/onboarding/").content.decode()
    assert "<h1>Become a provider</h1>" in page
    assert 'data-testid="calculator-result"' in page and 'data-testid="calculator-form"' in page
    assert 'id="calc_gpu"' in page and 'value="rtx4090" selected' in page and 'name="tier" value="7"' in page
    assert 'data-testid="tier7-note"' in page and "95% uptime, 60% utilization" in page
    assert 'hx-get="/provider/calculator/"' in page and 'action="/provider/calculator/"' in page


def test_the_provider_dashboard_links_to_it(client, provider):
    client.force_login(provider.user)
    page = client.get("/provider/").content.decode()
    assert 'href="/provider/calculator/"' in page and 'data-testid="calculator-link"' in page
