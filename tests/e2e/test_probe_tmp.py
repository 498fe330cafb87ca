import pytest
from tests.factories import make_node

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

def test_probe(page, live_server, settings):
    settings.CATALOG_PAGE_SIZE = 3
    for i in range(5):
        make_node(gpu_model="h100", gpu_price_per_hour_micros=1_000_000 + i * 10_000, trust_tier=1, mode="provider")
        make_node(gpu_model="rtx4090", gpu_price_per_hour_micros=100_000 + i * 10_000)
    reqs = []
    page.on("request", lambda r: reqs.append((r.url, r.headers.get("hx-target"), r.headers.get("hx-request"), r.headers.get("hx-history-restore-request"))))
    page.goto("/gpus/")
    page.evaluate("window.__marker = 1")
    page.select_option("select[name=gpu_model]", "h100")
    page.wait_for_timeout(1000)
    print("URL", page.url, page.evaluate("window.__marker"))
    print("count main", page.locator("main").count(), page.locator("#catalog-results").count(), page.locator("[data-testid=result-count]").inner_text())
    page.select_option("select[name=sort]", "-price")
    page.wait_for_timeout(1000)
    print("URL", page.url, page.locator("[data-testid=offer-row]").evaluate_all("rs => rs.map(r => r.dataset.priceMicros)"))
    page.get_by_role("link", name="Next →").click()
    page.wait_for_timeout(1000)
    print("URL", page.url, page.locator("[data-testid=offer-row]").evaluate_all("rs => rs.map(r => r.dataset.priceMicros)"))
    page.go_back()
    page.wait_for_timeout(1000)
    print("URL", page.url, page.evaluate("window.__marker"), page.locator("[data-testid=offer-row]").evaluate_all("rs => rs.map(r => r.dataset.priceMicros)"))
    page.locator(".board-card", has_text="RTX 4090").click()
    page.wait_for_timeout(1000)
    print("URL", page.url, page.evaluate("window.__marker"), page.locator("select[name=gpu_model]").input_value(), page.locator("[data-testid=result-count]").inner_text())
    page.select_option("select[name=sort]", "price")
    page.wait_for_timeout(1000)
    print("URL", page.url, page.locator("[data-testid=result-count]").inner_text())
    for r in reqs: print(r)
