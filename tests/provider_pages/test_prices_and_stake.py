"""Provider-mode list prices, and the stake page."""

from __future__ import annotations

import pytest

from providers import services
from providers.models import GpuModel, ProviderGpuPrice
from tests.factories import make_node

pytestmark = pytest.mark.django_db


def _prices(**gpu) -> dict:
    data = {f"gpu_{slug}": "" for slug in GpuModel.objects.values_list("slug", flat=True)}
    data.update({"cpu_per_core_month": "1.00", "memory_per_gb_month": "0.20", "storage_per_gb_month": "0.02"})
    data.update({f"gpu_{slug}": price for slug, price in gpu.items()})
    return data


def _saved(provider) -> dict:
    return dict(ProviderGpuPrice.objects.filter(provider=provider).values_list("gpu_model_id", "price_per_hour_micros"))


def test_prices_page_has_a_field_per_gpu_model_with_the_fizz_price_for_reference(provider_client):
    html = provider_client.get("/provider/prices/").content.decode()
    for slug in GpuModel.objects.values_list("slug", flat=True):
        assert f'name="gpu_{slug}"' in html
    assert 'name="cpu_per_core_month" value="0.75"' in html  # the profile's defaults
    assert "$0.175" in html  # the Fizz RTX 4090 price


def test_saving_prices_stores_micros_and_prices_the_example_machine(provider_client, provider):
    response = provider_client.post("/provider/prices/", _prices(rtx4090="0.40", h100="2.40"))
    assert response.status_code == 302 and response["Location"] == "/provider/prices/"
    assert _saved(provider) == {"rtx4090": 400_000, "h100": 2_400_000}
    provider.refresh_from_db()
    assert (
        provider.cpu_price_per_core_month_micros,
        provider.memory_price_per_gb_month_micros,
        provider.storage_price_per_gb_month_micros,
    ) == (1_000_000, 200_000, 20_000)

    html = provider_client.get("/provider/prices/").content.decode()
    assert 'name="gpu_h100" value="2.4"' in html
    # 1× RTX 4090 at $0.40/h + (16 × $1.00 + 64 × $0.20 + 500 × $0.02) per month / 730 = $0.453151/h
    example = html.split('data-testid="example-machine"')[1]
    assert "1× GeForce RTX 4090" in example
    assert 'data-micros="453151">$0.453151' in example


def test_a_blank_gpu_price_stops_offering_the_model(provider_client, provider):
    provider_client.post("/provider/prices/", _prices(rtx4090="0.40", h100="2.40"))
    provider_client.post("/provider/prices/", _prices(h100="2.50"))
    assert _saved(provider) == {"h100": 2_500_000}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gpu_h100", "cheap", "Enter a price in US dollars"),
        ("gpu_h100", "-1", "A price must be above zero."),
        ("gpu_h100", "250", "above the $100 limit"),
        ("cpu_per_core_month", "", "Enter a price in US dollars"),
        ("storage_per_gb_month", "0", "A price must be above zero."),
    ],
)
def test_a_bad_price_is_shown_next_to_its_field_and_nothing_is_saved(provider_client, provider, field, value, message):
    provider_client.post("/provider/prices/", _prices(rtx4090="0.40"))
    response = provider_client.post("/provider/prices/", {**_prices(rtx4090="0.55", h100="2.40"), field: value})
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-testid="error-{field}"' in html
    assert message in html.split(f'data-testid="error-{field}"')[1].split("</ul>")[0]
    assert "Nothing was saved" in html
    assert _saved(provider) == {"rtx4090": 400_000}  # the whole save was rolled back
    provider.refresh_from_db()
    assert provider.cpu_price_per_core_month_micros == 1_000_000


def test_stake_page_shows_staked_required_shortfall_and_history(client, outsider):
    make_node(provider=outsider, name="rig-a", gpu_count=1)
    make_node(provider=outsider, name="rig-b", gpu_count=1, mode="provider")
    services.stake_record(provider=outsider, kind="stake", amount="250", reason="first stake")
    services.stake_record(provider=outsider, kind="slash", amount="50", reason="downtime during lease 7")
    client.force_login(outsider.user)
    html = client.get("/provider/stake/").content.decode()

    def number(testid: str) -> str:
        return html.split(f'data-testid="{testid}">')[1].split(" <small>")[0]

    assert (number("stake-staked"), number("stake-required"), number("stake-shortfall")) == ("200", "400", "200")
    assert "200 per GPU × 2 GPUs" in html
    warning = html.split('data-testid="stake-warning"')[1].split("</div>")[0]
    assert "rig-b" in warning and "rig-a" not in warning  # oldest node covered first
    assert "recorded by an admin (off-chain agreement)" in html  # admin stake stays, labelled as such
    history = html.split('data-testid="stake-history"')[1].split("</table>")[0]
    assert history.count('data-testid="stake-event"') == 2
    assert "−50" in history and "+250" in history and "downtime during lease 7" in history
    assert history.index("Slashed") < history.index("Staked")  # newest first


def test_stake_numbers_show_fractions_of_spon(provider_client, provider):
    services.stake_record(provider=provider, kind="unstake", amount="0.5")
    html = provider_client.get("/provider/stake/").content.decode()
    assert 'data-testid="stake-staked">1,999.5 <small>' in html
