"""A CPU-only offer is priced per machine, not labelled "1×" or "per GPU-hour" (catalog, market
board, offer page); the API says what its units are, beside the per-GPU fields it always had."""

from __future__ import annotations

import re

import pytest

from core.money import format_usd
from tests.factories import make_node, make_provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def nodes(settings):
    settings.MARKET_BOARD_CACHE_SECONDS = 0
    provider = make_provider(display_name="Mixed Co")
    return {
        "cpu": make_node(provider=provider, name="cpu-box", gpu_model="cpu-general", cpu_cores=64, vram_gb=256),
        "gpu": make_node(provider=provider, name="gpu-box", gpu_model="rtx4090", gpu_count=2),
    }


def _row(html: str, node_id: int) -> str:
    return html.split(f'data-node-id="{node_id}"')[1].split("</tr>")[0]


def _cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", " ", cell).split() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_the_catalog_row_of_a_cpu_only_machine_has_no_gpu_count_and_no_gpu_hour_price(client, nodes):
    html = client.get("/gpus/").content.decode()
    cpu_row = _row(html, nodes["cpu"].id)
    assert "1×" not in cpu_row
    assert "<strong>CPU only (General, 49–127 threads)</strong>" in cpu_row and "no GPU" in cpu_row
    assert 'data-testid="no-gpu-price">—<' in cpu_row
    # The GPU box keeps its count and its price per GPU-hour (half the node's price).
    gpu_row = _row(html, nodes["gpu"].id)
    assert "<strong>2× GeForce RTX 4090</strong>" in gpu_row and "no-gpu-price" not in gpu_row
    nodes["gpu"].refresh_from_db()
    assert _cells(gpu_row)[-2] == [format_usd(nodes["gpu"].price_per_gpu_hour_micros)]


def test_the_market_board_prices_cpu_only_machines_per_machine_hour(client, nodes):
    html = client.get("/gpus/").content.decode()
    board = html.split('data-testid="market-board"')[1].split("</div>")[0]
    cards = {re.search(r"<strong>(.*?)</strong>", card).group(1): card for card in board.split("board-card")[1:]}
    cpu = cards["CPU only (General, 49–127 threads)"]
    assert "1 free machine" in cpu and "per machine-h" in cpu and "GPU" not in cpu.split("</strong>")[1]
    assert "per GPU-h" in cards["GeForce RTX 4090"] and "2 free GPUs" in cards["GeForce RTX 4090"]


def test_the_offer_page_of_a_cpu_only_machine_has_no_gpu_count(client, nodes):
    html = client.get(f"/gpus/{nodes['cpu'].id}/").content.decode()
    heading = html.split("<h1>")[1].split("</h1>")[0]
    assert heading.startswith("CPU only (General") and "1×" not in heading
    assert "1×" not in html.split("<title>")[1].split("</title>")[0]
    assert "per GPU-hour" not in html and "Per GPU-hour" not in html
    assert "per hour (CPU tier)" in html
    gpu_page = client.get(f"/gpus/{nodes['gpu'].id}/").content.decode()
    assert "<h1>2× GeForce RTX 4090" in gpu_page and "Per GPU-hour" in gpu_page


def test_the_api_says_a_cpu_only_offer_counts_one_machine(client, nodes):
    items = {item["node_id"]: item for item in client.get("/api/v1/offers").json()["items"]}
    cpu, gpu = items[nodes["cpu"].id], items[nodes["gpu"].id]
    assert (cpu["gpu_kind"], cpu["unit"], cpu["gpu_count"]) == ("cpu", "machine", 1)
    assert (gpu["gpu_kind"], gpu["unit"], gpu["gpu_count"]) == ("gpu", "gpu", 2)
    # The per-GPU fields stay for old clients: for one machine, per unit is the node's price.
    assert cpu["price_per_gpu_hour"] == cpu["price_per_hour"]
    detail = client.get(f"/api/v1/offers/{nodes['cpu'].id}").json()
    assert (detail["gpu_kind"], detail["unit"]) == ("cpu", "machine")
    board = {row["gpu_model"]: row for row in client.get("/api/v1/market").json()}
    assert (board["cpu-general"]["kind"], board["cpu-general"]["unit"]) == ("cpu", "machine")
    assert (board["rtx4090"]["kind"], board["rtx4090"]["unit"]) == ("gpu", "gpu")
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert (
        "per machine-hour when unit is `machine`"
        in schema["OfferOut"]["properties"]["price_per_gpu_hour"]["description"]
    )


def test_rent_on_a_cpu_only_machine_pins_it_without_a_gpu_count(client, nodes, django_user_model):
    user = django_user_model.objects.create_user(email="renter@example.test", password="x")
    client.force_login(user)
    html = client.get(f"/deployments/new/?node={nodes['cpu'].id}").content.decode()
    pinned = html.split('data-testid="pinned-node"')[1].split("</section>")[0]
    assert "CPU only (General" in pinned and "1×" not in pinned
    gpu = client.get(f"/deployments/new/?node={nodes['gpu'].id}").content.decode()
    assert "2× GeForce RTX 4090" in gpu.split('data-testid="pinned-node"')[1].split("</section>")[0]
