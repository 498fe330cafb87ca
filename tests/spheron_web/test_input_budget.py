"""No input costs more than a fixed budget or gets a 500 (issue 18, point 4): one test per input
class, each a 4xx within a time bound."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from pydantic import ValidationError

from billing.forms import parse_usd_amount
from providers.api import RegisterIn
from providers.services import spon_to_base_units, usd_to_micros
from spheron_web.errors import ApplicationError
from tests.deployment_pages.conftest import bearer

pytestmark = pytest.mark.django_db

BUDGET_SECONDS = 0.5
NON_ASCII_DIGITS = ["٣", "３", "٣٠", "３０.００", "1٠", "۵", "१"]  # Arabic-Indic, full-width, Persian, Devanagari


class timed:
    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.started
        assert self.elapsed < BUDGET_SECONDS, f"took {self.elapsed:.3f} s"


@pytest.fixture
def api(owner) -> Client:
    return Client(**bearer(owner))


# --- Money: ASCII digits only, no exponents, bounded -------------------------------------------


@pytest.mark.parametrize("amount", NON_ASCII_DIGITS)
def test_top_up_amounts_are_ascii_digits_only(amount):
    with pytest.raises(ApplicationError):
        parse_usd_amount(amount)


@pytest.mark.parametrize("amount", [*NON_ASCII_DIGITS, "1e999999", "9e9999999999", "1" * 5000, "0." + "1" * 5000])
def test_provider_prices_are_plain_ascii_numbers(amount):
    with timed(), pytest.raises(ApplicationError) as caught:
        usd_to_micros(amount, field="gpu_h100", maximum=100_000_000)
    assert caught.value.extra == {"field": "gpu_h100"}


@pytest.mark.parametrize("amount", [*NON_ASCII_DIGITS, "1e999999", "1" * 5000])
def test_stake_amounts_are_plain_ascii_numbers(amount):
    with timed(), pytest.raises(ApplicationError):
        spon_to_base_units(amount)


def test_plain_prices_still_parse():
    assert usd_to_micros("1.25", field="f", maximum=10**9) == 1_250_000
    assert usd_to_micros("$0.30", field="f", maximum=10**9) == 300_000
    assert parse_usd_amount("25.00") == 25_000_000


@pytest.mark.parametrize("price", ["٣", "３", "0.٣"])
def test_the_agents_price_is_ascii_digits_only(price):
    hardware = {"cpu_cores": 4, "memory_gb": 8, "storage_gb": 100}
    base = {"machine_id": "a" * 64, "hostname": "h", "agent_version": "1", "hardware": hardware}
    assert RegisterIn.model_validate({**base, "price_per_hour": "0.30"}).price_per_hour is not None

    with pytest.raises(ValidationError):
        RegisterIn.model_validate({**base, "price_per_hour": price})


@pytest.mark.parametrize("price", ["٣", "３", "1e5", "1" * 3000])
def test_the_offers_max_price_filter_is_ascii_digits_only(api, price):
    with timed():
        response = api.get("/api/v1/offers", {"max_price_per_hour": price})

    assert response.status_code == 422
    assert response.json()["extra"]["errors"][0]["field"] == "max_price_per_hour"


@pytest.mark.parametrize("amount", ["٣٠", "３０"])
def test_the_top_up_api_refuses_non_ascii_digits(api, amount):
    response = api.post("/api/v1/billing/topups", {"amount": amount}, content_type="application/json")

    assert response.status_code == 422
