from __future__ import annotations

import re

import pytest

from tests.factories import make_node


def row_ids(html: str) -> list[int]:
    return [int(node_id) for node_id in re.findall(r'data-node-id="(\d+)"', html)]


def test_catalog_lists_offers_with_filters_from_the_query_string(client, market):
    response = client.get("/gpus/", {"gpu_model": "rtx4090", "sort": "-price"})
    assert response.status_code == 200
    html = response.content.decode()
    assert row_ids(html) == [market["pricey_4090"].id, market["fizz_4090"].id]
    assert '<option value="rtx4090" selected>' in html
    assert '<option value="-price" selected>' in html
    assert "<html" in html  # a plain request gets the whole page, so links work without JavaScript


def test_htmx_request_gets_only_the_results_fragment(client, market):
    # htmx 4 names the target "tag#id"; the form sends its empty fields too.
    params = {"mode": "provider", "gpu_model": "", "min_vram_gb": "", "tier": "", "sort": "price"}
    response = client.get("/gpus/", params, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="section#catalog-results")
    assert response["HX-Push-Url"] == "/gpus/?mode=provider"
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="catalog-results"')
    assert "<html" not in html
    assert set(row_ids(html)) == {market["h100x8"].id, market["a100x4"].id, market["l40s"].id}


def test_history_restore_gets_the_whole_page(client, market):
    response = client.get(
        "/gpus/",
        {"mode": "provider"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="catalog-results",
        HTTP_HX_HISTORY_RESTORE_REQUEST="true",
    )
    assert "<html" in response.content.decode()


def test_page_numbers_and_links_keep_the_filters(client, db, settings):
    settings.CATALOG_PAGE_SIZE = 3
    for index in range(7):
        make_node(gpu_model="rtx3090", gpu_price_per_hour_micros=100_000 + index)
    first = client.get("/gpus/", {"gpu_model": "rtx3090"}).content.decode()
    assert "1–3 of 7 offers" in first
    assert 'href="?gpu_model=rtx3090&amp;page=2"' in first
    third = client.get("/gpus/", {"gpu_model": "rtx3090", "page": "3"}).content.decode()
    assert len(row_ids(third)) == 1
    assert "Page 3 of 3" in third


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "cheapest"}, "sort"),
        ({"min_vram_gb": "lots"}, "min_vram_gb"),
        ({"max_price_per_hour": "-3"}, "max_price_per_hour"),
        ({"gpu_model": "rtx\x004090"}, "gpu_model"),
        ({"gpu_model": "rtx9999"}, "gpu_model"),
        ({"tier": "gold"}, "tier"),
        ({"page": "two"}, "page"),
    ],
)
def test_bad_filters_are_explained_and_ignored(client, market, params, field):
    response = client.get("/gpus/", params)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="filter-errors"' in html
    assert f"<code>{field}</code>" in html
    assert len(row_ids(html)) == 6  # the rest of the page still works


def test_blank_form_fields_mean_no_filter(client, market):
    blank = {
        field: ""
        for field in (
            "gpu_model",
            "min_vram_gb",
            "min_gpus",
            "region",
            "continent",
            "max_price_per_hour",
            "min_uptime",
            "tier",
            "mode",
            "sort",
        )
    }
    html = client.get("/gpus/", blank).content.decode()
    assert 'data-testid="filter-errors"' not in html
    assert len(row_ids(html)) == 6


def test_empty_state(client, market):
    html = client.get("/gpus/", {"max_price_per_hour": "0.01"}).content.decode()
    assert 'data-testid="empty-state"' in html
    assert "No offers match these filters" in html


def test_market_board_shows_models_with_offers(client, market):
    html = client.get("/gpus/").content.decode()
    board = html.split('data-testid="market-board"')[1].split("</div>")[0]
    assert "H100 80GB" in board and "GeForce RTX 4090" in board
    assert "B200" not in board  # no offers, no card
    assert 'href="?gpu_model=h100"' in board


def test_offer_detail_page(client, market):
    node = market["h100x8"]
    html = client.get(f"/gpus/{node.id}/").content.decode()
    assert "8× H100 80GB" in html
    assert "6 of 8 GPUs free" in html
    assert "Acme Compute" in html
    assert client.get("/gpus/999999/").status_code == 404
    # A node the catalog does not list is not an offer: a 404 to visitors, explained to its owner.
    assert client.get(f"/gpus/{market['offline'].id}/").status_code == 404
    client.force_login(market["offline"].provider.user)
    offline = client.get(f"/gpus/{market['offline'].id}/").content.decode()
    assert "not rentable right now" in offline


def test_home_page(client, market):
    html = client.get("/").content.decode()
    assert "Browse GPUs" in html
    assert "H100 80GB" in html


def test_offer_page_says_an_unstaked_node_is_not_rentable_rather_than_fully_rented(client, db):
    node = make_node(stake_covered=False)
    client.force_login(node.provider.user)  # unlisted: only its owner sees the page
    html = client.get(f"/gpus/{node.id}/").content.decode()
    assert "the provider's stake does not cover this node" in html
    assert "Fully rented" not in html
    assert 'data-testid="rent-link"' not in html


def test_cpu_only_offers_show_no_vram_and_no_gpu_units(client, db):
    node = make_node(
        gpu_model="cpu-basic", vram_gb=64, memory_gb=64, bandwidth_mbps=0, gpu_price_per_hour_micros=20_000
    )
    detail = client.get(f"/gpus/{node.id}/").content.decode()
    assert "VRAM" not in detail and "per GPU-hour" not in detail and "GPU free" not in detail
    assert "Available: 16 of 16 cores free" in detail
    assert "none: CPU only (Basic" in detail
    assert "per hour (CPU tier)" in detail
    assert "not reported" in detail  # the agent sent no bandwidth: not "0 Mbps"

    catalog = client.get("/gpus/", {"gpu_model": "cpu-basic"}).content.decode()
    row = catalog.split(f'data-node-id="{node.id}"')[1].split("</tr>")[0]
    assert "no GPU · free" in row and "GB each" not in row
    board = catalog.split('data-testid="market-board"')[1].split("</div>")[0]
    card = board.split("CPU only (Basic")[1].split("</a>")[0]
    assert "1 offer<" in card and "1 free machine<" in card and " GB" not in card


def test_apple_offers_call_their_memory_unified(client, db):
    node = make_node(gpu_model="apple-m2-max", vram_gb=96, memory_gb=96)
    detail = client.get(f"/gpus/{node.id}/").content.decode()
    assert "Unified memory</dt><dd>96 GB" in detail and "VRAM" not in detail


def test_home_page_sends_each_visitor_to_the_right_provider_page(client, db, django_user_model):
    assert "/accounts/signup/?next=/provider/onboarding/" in client.get("/").content.decode()
    user = django_user_model.objects.create_user(email="dev@example.com", password="pw-12345678")
    client.force_login(user)
    html = client.get("/").content.decode()
    assert 'href="/provider/onboarding/">Become a provider' in html
