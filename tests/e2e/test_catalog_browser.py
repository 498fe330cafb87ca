"""The /gpus/ catalog in Chromium: filters, sort and pages go through htmx, and the URL follows.

Every expected list below is worked out from the nodes the `market` fixture creates, in the
catalog's documented order (sort key, then node id, both in the sort's direction).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from providers.models import Node, NodeMode, NodeStatus
from tests.factories import make_node, make_provider

# The catalog keeps reference data (GPU models, regions) that a data migration loads; a
# transactional test empties every table afterwards, so each test gets it back from the
# snapshot taken when the test database was created.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PAGE_SIZE = 10
GPU_NAMES = {"rtx4090": "GeForce RTX 4090", "rtx3090": "GeForce RTX 3090", "h100": "H100 80GB", "a100-80g": "A100 80GB"}
REGIONS = ["us-east", "us-west", "eu-central", "eu-west", "ap-northeast", "ap-southeast"]


@dataclass(frozen=True)
class Market:
    listed: list[Node]

    def offers(self, gpu_model: str, *, sort: str = "price") -> list[Node]:
        """The catalog's order for `price` / `-price`: price, then id, both in the same direction."""
        nodes = [node for node in self.listed if node.gpu_model_id == gpu_model]
        return sorted(nodes, key=lambda node: (node.price_per_hour_micros, node.id), reverse=sort == "-price")


@pytest.fixture
def market(settings) -> Market:
    """60 listed nodes over four GPU models (18/16/14/12), so a model spans one or two pages of 10."""
    settings.CATALOG_PAGE_SIZE = PAGE_SIZE
    community = [make_provider(display_name=f"Community rig {n}") for n in range(1, 4)]
    datacenters = [make_provider(display_name=name) for name in ("Acme Compute", "Nordic GPU Cloud")]
    # (model, how many, GPU $/h in micro-USD for the first, step, GPUs per node, mode)
    plan = [
        ("rtx4090", 18, 300_000, 11_000, 1, NodeMode.FIZZ),
        ("rtx3090", 16, 150_000, 7_000, 2, NodeMode.FIZZ),
        ("h100", 14, 2_000_000, 45_000, 8, NodeMode.PROVIDER),
        ("a100-80g", 12, 1_200_000, 30_000, 4, NodeMode.PROVIDER),
    ]
    listed = []
    for gpu_model, count, first_price, step, gpu_count, mode in plan:
        for i in range(count):
            fizz = mode == NodeMode.FIZZ and i % 5 != 4  # every fifth consumer card sits in a datacenter
            listed.append(
                make_node(
                    provider=community[i % 3] if fizz else datacenters[i % 2],
                    gpu_model=gpu_model,
                    gpu_count=gpu_count,
                    # A distinct price per model, not in creation order (5 is prime to every count),
                    # so "sorted by price" differs from "sorted by id".
                    gpu_price_per_hour_micros=first_price + step * ((i * 5) % count),
                    region=REGIONS[i % len(REGIONS)],
                    mode=NodeMode.FIZZ if fizz else NodeMode.PROVIDER,
                    trust_tier=4 + i % 4 if fizz else 1 + i % 3,
                    uptime_30d=0.85 + (i % 15) / 100,
                    cpu_cores=8 * gpu_count,
                    memory_gb=32 * gpu_count,
                )
            )
    # Not offers: each fails one listing condition, so the counts below would be off if shown.
    make_node(provider=datacenters[0], gpu_model="h100", gpu_count=8, status=NodeStatus.OFFLINE, mode="provider")
    make_node(provider=datacenters[0], gpu_model="h100", gpu_count=8, in_maintenance=True, mode="provider")
    make_node(provider=datacenters[1], gpu_model="h100", gpu_count=8, available_gpus=0, mode="provider")
    return Market(listed=listed)


# --- helpers --------------------------------------------------------------------------------
def query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def rows(page: Page) -> list[dict]:
    return page.locator("[data-testid=offer-row]").evaluate_all(
        """rows => rows.map(row => ({
            id: Number(row.dataset.nodeId),
            price: Number(row.dataset.priceMicros),
            gpu: row.cells[0].querySelector('strong').textContent.trim(),
        }))"""
    )


def ids(nodes: list[Node]) -> list[int]:
    return [node.id for node in nodes]


def count_text(page: Page) -> str:
    return " ".join(page.get_by_test_id("result-count").inner_text().split())


def swaps_results(page: Page, action: Callable[[], object]) -> None:
    """Run `action` and wait until htmx has replaced #catalog-results with the server's answer."""
    page.locator("#catalog-results").evaluate("section => { section.dataset.stale = 'yes' }")
    action()
    page.wait_for_selector("#catalog-results:not([data-stale])", state="attached")
    # A whole page swapped into the results would show a second header and menu.
    assert page.locator("header.topbar").count() == 1, "a whole page was swapped into #catalog-results"
    assert page.locator("main").count() == 1


def mark_document(page: Page) -> None:
    """A full page load would lose this; an htmx swap keeps it."""
    page.evaluate("window.__marker = 1")


def same_document(page: Page) -> bool:
    return page.evaluate("window.__marker") == 1


# --- tests ----------------------------------------------------------------------------------
def test_filter_sort_and_page_through_htmx_then_go_back(page: Page, live_server, market: Market):
    page.goto("/gpus/")
    assert count_text(page) == "1–10 of 60 offers"
    page.screenshot(path="/tmp/catalog.png", full_page=True)
    mark_document(page)

    # Choose a model in the filter form.
    swaps_results(page, lambda: page.select_option("#filter-gpu-model", "h100"))
    assert same_document(page), "choosing a model reloaded the page instead of swapping the results"
    assert query(page)["gpu_model"] == ["h100"]
    h100_cheapest_first = market.offers("h100")
    shown = rows(page)
    assert {row["gpu"] for row in shown} == {"8× H100 80GB"}
    assert [row["id"] for row in shown] == ids(h100_cheapest_first[:PAGE_SIZE])
    assert count_text(page) == "1–10 of 14 offers"  # 3 unlisted H100 nodes are not counted
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 1 of 2")

    # Most expensive first.
    swaps_results(page, lambda: page.select_option("#filter-sort", "-price"))
    assert same_document(page)
    assert query(page)["sort"] == ["-price"]
    assert query(page)["gpu_model"] == ["h100"]
    page_one = rows(page)
    prices = [row["price"] for row in page_one]
    assert prices == sorted(set(prices), reverse=True)  # strictly descending: no two H100 nodes cost the same
    h100_priciest_first = market.offers("h100", sort="-price")
    assert [row["id"] for row in page_one] == ids(h100_priciest_first[:PAGE_SIZE])
    assert page.locator("#filter-gpu-model").input_value() == "h100"

    # Next page: the rest of the H100s, still in descending price order.
    next_link = page.get_by_role("link", name="Next →")
    assert next_link.get_attribute("href")  # a real link, for readers without JavaScript
    swaps_results(page, next_link.click)
    assert same_document(page)
    assert query(page)["page"] == ["2"]
    assert query(page)["sort"] == ["-price"] and query(page)["gpu_model"] == ["h100"]
    page_two = rows(page)
    assert [row["id"] for row in page_two] == ids(h100_priciest_first[PAGE_SIZE:])
    assert not {row["id"] for row in page_two} & {row["id"] for row in page_one}
    assert page_two[0]["price"] < page_one[-1]["price"]
    assert [row["price"] for row in page_two] == sorted({row["price"] for row in page_two}, reverse=True)
    assert count_text(page) == "11–14 of 14 offers"
    expect(page.get_by_role("link", name="Next →")).to_have_count(0)

    # The browser's back button: htmx 4 fetches page 1 again and swaps it in.
    swaps_results(page, page.go_back)
    assert "page" not in query(page)
    assert query(page)["sort"] == ["-price"] and query(page)["gpu_model"] == ["h100"]
    expect(page.get_by_test_id("result-count")).to_have_text(re.compile(r"1–10 of 14 offers"))
    assert [row["id"] for row in rows(page)] == ids(h100_priciest_first[:PAGE_SIZE])
    assert page.locator("#filter-sort").input_value() == "-price"
    assert same_document(page), "back reloaded the whole document instead of an htmx history restore"


def test_a_shared_link_opens_on_its_filters_sort_and_page(page: Page, live_server, market: Market):
    page.goto("/gpus/?gpu_model=h100&sort=-price&page=2")

    assert page.locator("#filter-gpu-model").input_value() == "h100"
    assert page.locator("#filter-sort").input_value() == "-price"
    assert page.locator("#filter-max-price-per-hour").input_value() == ""
    assert [row["id"] for row in rows(page)] == ids(market.offers("h100", sort="-price")[PAGE_SIZE:])
    assert count_text(page) == "11–14 of 14 offers"
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 2 of 2")
    previous = page.get_by_role("link", name="← Previous")
    assert parse_qs(urlsplit(previous.get_attribute("href")).query) == {
        "gpu_model": ["h100"],
        "sort": ["-price"],
        "page": ["1"],
    }
    expect(page.locator(".board-card.selected")).to_contain_text("H100 80GB")


def test_a_price_limit_nothing_meets_shows_the_empty_state(page: Page, live_server, market: Market):
    page.goto("/gpus/")
    mark_document(page)
    assert page.get_by_test_id("empty-state").count() == 0

    def limit_price() -> None:
        page.locator("#filter-max-price-per-hour").fill("0.01")  # every node costs more than a cent an hour
        page.locator("#filter-max-price-per-hour").press("Enter")

    swaps_results(page, limit_price)
    assert same_document(page)
    assert query(page)["max_price_per_hour"] == ["0.01"]
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    expect(page.get_by_test_id("empty-state")).to_contain_text("No offers match these filters")
    assert rows(page) == []
    assert count_text(page) == ""
    assert page.locator("#filter-max-price-per-hour").input_value() == "0.01"
    # The form is part of the swapped fragment; a keyboard user keeps their place in it.
    assert page.evaluate("document.activeElement.id") == "filter-max-price-per-hour"


def test_market_board_cards_filter_the_list(page: Page, live_server, market: Market):
    page.goto("/gpus/?sort=-price")
    mark_document(page)
    board = page.get_by_test_id("market-board")
    expect(board.locator(".board-card")).to_have_count(4)  # models without offers are left out
    expect(board.locator(".board-card", has_text="A100 80GB")).to_contain_text("12 offers")

    card = board.locator(".board-card", has_text="A100 80GB")
    assert parse_qs(urlsplit(card.get_attribute("href")).query) == {"gpu_model": ["a100-80g"], "sort": ["-price"]}
    swaps_results(page, card.click)
    assert same_document(page)
    assert query(page) == {"gpu_model": ["a100-80g"], "sort": ["-price"]}
    assert [row["id"] for row in rows(page)] == ids(market.offers("a100-80g", sort="-price")[:PAGE_SIZE])
    assert {row["gpu"] for row in rows(page)} == {"4× A100 80GB"}
    assert count_text(page) == "1–10 of 12 offers"
    expect(board.locator(".board-card.selected")).to_have_count(1)
    expect(page.locator(".board-card.selected")).to_contain_text("A100 80GB")
    # The form shows what the list shows, so the next change keeps the card's model.
    assert page.locator("#filter-gpu-model").input_value() == "a100-80g"

    swaps_results(page, lambda: page.select_option("#filter-sort", "price"))
    assert query(page)["gpu_model"] == ["a100-80g"]
    assert [row["id"] for row in rows(page)] == ids(market.offers("a100-80g")[:PAGE_SIZE])


def test_using_the_filter_form_reports_no_ignored_filters(page: Page, live_server, market: Market):
    page.goto("/gpus/")
    swaps_results(page, lambda: page.select_option("#filter-gpu-model", "rtx3090"))
    assert count_text(page) == "1–10 of 16 offers"
    expect(page.get_by_test_id("filter-errors")).to_have_count(0)
