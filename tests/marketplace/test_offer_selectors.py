from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import ApplicationError
from marketplace.catalog.filters import OfferFilter, parse_tiers
from marketplace.catalog.selectors import OFFER_COLUMNS, market_board_compute, offer_list, offer_page
from providers.models import NodeStatus
from tests.factories import make_node

LISTED = {"cheap_3090", "fizz_4090", "pricey_4090", "h100x8", "a100x4", "l40s"}


def names(market, queryset) -> list[str]:
    by_id = {node.id: name for name, node in market.items()}
    return [by_id[node_id] for node_id in queryset.values_list("id", flat=True)]


def result(market, **filters) -> set[str]:
    return set(names(market, offer_list(filters=OfferFilter(**filters))))


def test_only_listed_nodes_are_offers(market):
    assert result(market) == LISTED


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"gpu_model": "rtx4090"}, {"fizz_4090", "pricey_4090"}),
        ({"gpu_model": "RTX4090"}, {"fizz_4090", "pricey_4090"}),
        ({"min_vram_gb": 48}, {"h100x8", "a100x4", "l40s"}),
        ({"min_vram_gb": 80}, {"h100x8", "a100x4"}),
        ({"min_gpus": 4}, {"h100x8", "a100x4"}),
        ({"min_gpus": 7}, set()),  # the H100 box has 6 of 8 free
        ({"region": "eu-central"}, {"cheap_3090", "l40s"}),
        ({"continent": "europe"}, {"cheap_3090", "a100x4", "l40s"}),
        ({"continent": "asia"}, {"pricey_4090"}),
        ({"mode": "provider"}, {"h100x8", "a100x4", "l40s"}),
        ({"mode": "fizz"}, {"cheap_3090", "fizz_4090", "pricey_4090"}),
        ({"tier": "secured"}, {"h100x8", "a100x4", "l40s"}),
        ({"tier": "community"}, {"cheap_3090", "fizz_4090", "pricey_4090"}),
        ({"tier": "secured-1"}, {"h100x8"}),
        ({"tier": "community-4,6"}, {"fizz_4090", "cheap_3090"}),
        ({"tier": "2"}, {"a100x4"}),
        ({"min_uptime": 0.98}, {"h100x8", "a100x4"}),
        ({"min_uptime": 0.9, "mode": "fizz"}, {"fizz_4090", "pricey_4090"}),
    ],
)
def test_each_filter(market, filters, expected):
    assert result(market, **filters) == expected


def test_max_price_compares_the_whole_node_hourly_price(market):
    fizz_4090 = market["fizz_4090"]
    exact = Decimal(fizz_4090.price_per_hour_micros) / 1_000_000
    assert "fizz_4090" in result(market, max_price_per_hour=exact)
    assert "fizz_4090" not in result(market, max_price_per_hour=exact - Decimal("0.000001"))
    assert result(market, max_price_per_hour=Decimal("0.1")) == set()


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [
        ("price", lambda n: n.price_per_hour_micros, False),
        ("-price", lambda n: n.price_per_hour_micros, True),
        ("price_per_vram", lambda n: n.price_per_hour_micros // (n.gpu_count * n.vram_gb), False),
        ("uptime", lambda n: n.uptime_30d, False),
        ("-uptime", lambda n: n.uptime_30d, True),
        ("vram", lambda n: n.vram_gb, False),
        ("-vram", lambda n: n.vram_gb, True),
    ],
)
def test_each_sort(market, sort, key, reverse):
    got = offer_list(filters=OfferFilter(sort=sort))
    listed = [market[name] for name in LISTED]
    keys = [key(node) for node in got]
    assert keys == sorted((key(node) for node in listed), reverse=reverse)
    assert len(keys) == len(LISTED)


def test_price_per_vram_is_price_over_total_vram(market):
    h100 = offer_list(filters=OfferFilter(gpu_model="h100")).get()
    assert h100.price_per_vram_gb_micros == h100.price_per_hour_micros // (8 * 80)
    assert h100.price_per_gpu_hour_micros == h100.price_per_hour_micros // 8


def test_unknown_model_or_region_is_an_application_error_naming_the_field(market):
    with pytest.raises(ApplicationError) as excinfo:
        offer_page(filters=OfferFilter(gpu_model="rtx9999"), limit=10)
    assert excinfo.value.extra == {"field": "gpu_model"}
    with pytest.raises(ApplicationError) as excinfo:
        offer_page(filters=OfferFilter(region="mars-north"), limit=10)
    assert excinfo.value.extra == {"field": "region"}


def test_known_model_with_no_offers_is_an_empty_page_not_an_error(market):
    assert offer_page(filters=OfferFilter(gpu_model="b200"), limit=10).rows == []


def test_parse_tiers():
    assert parse_tiers("secured") == (1, 2, 3)
    assert parse_tiers("community") == (4, 5, 6, 7)
    assert parse_tiers("secured-2, community-7") == (2, 7)
    with pytest.raises(ValueError, match="unknown tier"):
        parse_tiers("secured-5")
    with pytest.raises(ValueError, match="unknown tier"):
        parse_tiers("8")


@pytest.mark.parametrize("sort", ["price", "-price", "price_per_vram", "uptime", "-uptime", "vram", "-vram"])
def test_keyset_pages_cover_every_offer_once_in_order(db, sort):
    # Many equal sort keys force the id tie-breaker to do its job.
    for index in range(23):
        make_node(
            gpu_model=("rtx4090", "rtx3090", "h100")[index % 3],
            gpu_price_per_hour_micros=100_000 * (index % 4),
            uptime_30d=(0.9, 0.95)[index % 2],
        )
    filters = OfferFilter(sort=sort)
    expected = list(offer_list(filters=filters).values_list("id", flat=True))
    seen, cursor, pages = [], None, 0
    while True:
        page = offer_page(filters=filters, limit=5, cursor=cursor)
        seen += [row["id"] for row in page.rows]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected
    assert pages == 5


def test_pagination_is_stable_when_offers_change_between_pages(db):
    nodes = [make_node(gpu_price_per_hour_micros=100_000 + index * 1000) for index in range(10)]
    filters = OfferFilter(sort="price")
    first = offer_page(filters=filters, limit=4)
    # Between pages: a cheaper node appears (before the cursor) and one already seen goes offline.
    make_node(gpu_price_per_hour_micros=1)
    nodes[0].status = NodeStatus.OFFLINE
    nodes[0].save()
    second = offer_page(filters=filters, limit=4, cursor=first.next_cursor)
    assert [row["id"] for row in second.rows] == [node.id for node in nodes[4:8]]


def test_cursor_from_another_sort_is_refused(market):
    page = offer_page(filters=OfferFilter(sort="price"), limit=2)
    with pytest.raises(ApplicationError, match="sort='price'"):
        offer_page(filters=OfferFilter(sort="-vram"), limit=2, cursor=page.next_cursor)


@pytest.mark.parametrize("cursor", ["zzz", "eyJ4IjoxfQ", "e30", "bnVsbA", "!" * 300])
def test_garbage_cursor_is_refused(market, cursor):
    with pytest.raises(ApplicationError, match="cursor"):
        offer_page(filters=OfferFilter(), limit=2, cursor=cursor)


def test_market_board_counts_free_gpus_lowest_and_median_per_gpu_hour(market):
    board = {row.gpu_model: row for row in market_board_compute()}
    rtx4090 = board["rtx4090"]
    prices = sorted([market["fizz_4090"].price_per_gpu_hour_micros, market["pricey_4090"].price_per_gpu_hour_micros])
    assert rtx4090.offers == 2  # offline and maintenance nodes are not offers
    assert rtx4090.free_gpus == 2
    assert rtx4090.lowest_price_per_gpu_hour_micros == prices[0]
    assert rtx4090.median_price_per_gpu_hour_micros == round((prices[0] + prices[1]) / 2)
    h100 = board["h100"]
    assert (h100.offers, h100.free_gpus) == (1, 6)  # the fully rented box is not counted
    assert h100.lowest_price_per_gpu_hour_micros == market["h100x8"].price_per_hour_micros // 8
    assert board["b200"].offers == 0 and board["b200"].median_price_per_gpu_hour_micros is None


def test_market_board_respects_other_filters_but_not_the_model(market):
    board = {row.gpu_model: row for row in market_board_compute(filters=OfferFilter(mode="fizz", gpu_model="h100"))}
    assert board["h100"].offers == 0
    assert board["rtx4090"].offers == 2


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"gpu_model": "rtx4090", "sort": "-price"},
        {"min_gpus": 2, "sort": "price_per_vram"},
        {"continent": "europe"},
    ],
)
def test_a_page_whose_sql_is_kept_reads_the_rows_as_they_are_now(market, filters):
    """offer_page keeps each query's SQL per process, never its rows: the second, kept, page shows
    a price changed in between, and both pages equal what the ORM itself reads."""
    offer = OfferFilter(**filters)
    first = offer_page(filters=offer, limit=50).rows
    assert first == list(offer_list(filters=offer).values(*OFFER_COLUMNS))

    node = market[names(market, offer_list(filters=offer))[0]]
    node.price_per_hour_micros += 1_000_000
    node.save()
    kept = offer_page(filters=offer, limit=50).rows

    assert kept == list(offer_list(filters=offer).values(*OFFER_COLUMNS))
    assert {row["id"]: row["price_per_hour_micros"] for row in kept}[node.id] == node.price_per_hour_micros


def test_a_region_added_to_a_continent_is_in_its_filter_at_once(db):
    from providers.models import Region

    offer = OfferFilter(continent="oceania")
    before = {row["id"] for row in offer_page(filters=offer, limit=50).rows}
    Region.objects.create(
        code="oc-test", name="Test Sound", continent="oceania", country="NZ", latitude=-41, longitude=174
    )
    node = make_node(region="oc-test")

    after = {row["id"] for row in offer_page(filters=offer, limit=50).rows}

    assert node.id not in before and after == before | {node.id}


def test_a_continent_without_regions_is_an_empty_page(db):
    from providers.models import Region

    Region.objects.filter(continent="oceania").delete()

    assert offer_page(filters=OfferFilter(continent="oceania"), limit=50).rows == []
