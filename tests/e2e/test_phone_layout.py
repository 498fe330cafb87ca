"""On a phone-sized screen (390 px) the pages fit: the top bar wraps instead of running off the
right edge, and a wide table scrolls inside itself instead of widening the whole page."""

from __future__ import annotations

import pytest

from billing.services import hold_capture, hold_place, topup_credit
from tests.deployment_pages.conftest import create_and_match
from tests.e2e.layout import PHONE, overflow
from tests.e2e.login import log_in, verified_user
from tests.factories import make_node, make_provider, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
MODELS = ("rtx4090", "rtx3090", "a100-80g", "h100")


@pytest.fixture
def viewport() -> dict[str, int]:
    return PHONE


def test_pages_fit_a_phone_screen(page, live_server):
    user = verified_user("pat@example.test", is_developer=True, is_provider=False)
    topup_credit(user=user, amount=50_000_000, reference_type="test", reference_id="t1", idempotency_key="t1")
    hold = hold_place(user=user, amount=5_000_000, reference_type="test", reference_id="h1")
    hold_capture(hold=hold, amount=1_234_567, payee=make_user(), fee_rate=0, idempotency_key="c1", memo="Usage")
    provider = make_provider(display_name="A provider with a rather long display name")
    for n in range(8):
        make_node(
            provider=provider,
            name=f"a-node-with-a-long-hostname-{n}",
            region=["us-east", "eu-west"][n % 2],
            gpu_model=MODELS[n % len(MODELS)],
        )
    # A matched deployment: the stepper, the score table, the commitment and the verify snippet.
    deployment, lease = create_and_match(user)
    assert lease is not None

    log_in(page, user.email, "/deployments/")

    pages = ("/", "/gpus/", "/deployments/", "/deployments/new/", "/billing/", "/billing/transactions/")
    for path in (*pages, f"/deployments/{deployment.id}/"):
        page.goto(path)
        assert overflow(page)["scroll"] <= 0, f"{path} is wider than the phone: {overflow(page)}"
        # Every top-bar link is on the screen, not past its right edge.
        for link in page.locator("header.topbar a").all():
            box = link.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, (path, link.inner_text())

    page.goto("/gpus/")
    table = page.locator("table.offers").first
    # The catalog's table is wider than a phone: it scrolls on its own.
    assert table.evaluate("t => t.scrollWidth > t.clientWidth && getComputedStyle(t).overflowX === 'auto'")

    # The filters take two columns and the market board is one row that scrolls sideways, so the
    # offers start within the first screen and a half, not after a card for every model.
    cards = page.locator("[data-testid=market-board] .board-card")
    assert cards.count() >= len(MODELS)
    tops = {round(card.bounding_box()["y"]) for card in cards.all()}
    assert len(tops) == 1, f"the board's cards are on {len(tops)} rows"
    board = page.get_by_test_id("market-board")
    assert board.evaluate("b => b.scrollWidth > b.clientWidth && getComputedStyle(b).overflowX === 'auto'")
    assert table.bounding_box()["y"] < 1.5 * PHONE["height"]
    filters = page.locator("#catalog-filters label")
    assert round(filters.nth(0).bounding_box()["y"]) == round(filters.nth(1).bounding_box()["y"])

    # Choosing a model from the board puts its card first, where the renter can see it.
    page.locator(".board-card", has_text="H100").click()
    page.wait_for_url(lambda url: "gpu_model=h100" in url)
    selected = page.locator(".board-card.selected")
    assert selected.inner_text().startswith("H100")
    left = min(card.bounding_box()["x"] for card in page.locator(".board-card").all())
    assert selected.bounding_box()["x"] == left
