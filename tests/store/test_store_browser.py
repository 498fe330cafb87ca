"""In Chromium: a developer opens the model store, fills in a template and presses Deploy; the
new-deployment page opens with the template's spec pinned to the cheapest offer that fits."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.deployments.conftest import fund
from tests.e2e.login import log_in, verified_user
from tests.factories import make_node, make_provider

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def developer(db):
    user = verified_user("ada@example.test", is_developer=True)
    fund(user, 50)
    return user


def test_deploy_a_template_from_the_model_store(page: Page, live_server, developer):
    provider = make_provider()
    cheap = make_node(provider=provider, gpu_price_per_hour_micros=160_000, region="us-east")
    make_node(provider=provider, gpu_price_per_hour_micros=320_000, region="eu-west")

    log_in(page, developer.email, "/models/", behind_login=False)
    expect(page.get_by_test_id("template-card")).to_have_count(7)

    page.get_by_test_id("template-link-jupyter-pytorch").click()
    page.wait_for_url("**/models/jupyter-pytorch/")
    expect(page.get_by_test_id("default-spec")).to_contain_text('"JUPYTER_TOKEN": "<JUPYTER_TOKEN>"')
    expect(page.get_by_test_id("template-preview")).to_contain_text("$0.1670/h on a GeForce RTX 4090 in us-east")

    page.fill("input[name=env_JUPYTER_TOKEN]", "notebook-secret")
    page.get_by_test_id("deploy-template").click()
    page.wait_for_url(f"**/deployments/new/?node={cheap.id}&prefill=store")
    spec = page.get_by_test_id("spec-text").input_value()
    assert "quay.io/jupyter/pytorch-notebook" in spec, (
        "the new-deployment page did not take the model store's spec: it needs the session pre-fill "
        "(marketplace.deployments.views._initial_spec reading PREFILL_SESSION_KEY)"
    )
    assert f"attributes: {{node: {cheap.id}}}" in spec and '"JUPYTER_TOKEN": "notebook-secret"' in spec
    expect(page.get_by_test_id("pinned-node")).to_contain_text(f"Pinned to node {cheap.id}")
    expect(page.get_by_test_id("spec-valid")).to_be_visible()
    expect(page.get_by_test_id("estimate-hourly")).to_have_text("$0.21/h")  # $0.166986 for the share × 1.2
