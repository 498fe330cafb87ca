"""/models/ and /models/<slug>/: the catalog, the form with its errors and estimate, "Deploy"
handing the pinned spec to the new-deployment page, and the offer page's fitting templates."""

from __future__ import annotations

import pytest
from django.test import Client

from marketplace.deployments.services import spec_from_source
from marketplace.store.services import PREFILL_SESSION_KEY
from providers.models import Node

pytestmark = pytest.mark.django_db


@pytest.fixture
def renter_client(renter) -> Client:
    client = Client()
    client.force_login(renter)
    return client


def test_the_catalog_lists_templates_by_category_with_the_cheapest_price(client, templates, market):
    page = client.get("/models/").content.decode()
    assert page.count('data-testid="template-card"') == 7
    assert 'data-testid="store-category-llm"' in page and 'data-testid="store-category-base"' in page
    assert "$0.16/h" in page  # Jupyter on the cheap 4090: $0.156986 for its share
    assert 'data-testid="nav-models"' in page and 'aria-current="page"' in page


def test_the_detail_page_shows_needs_form_and_default_spec(client, templates, market):
    page = client.get("/models/vllm-8b/").content.decode()
    assert "Hugging Face model id" in page and "Model size (billions of parameters)" in page
    assert 'type="password"' in page  # the secrets
    assert 'data-testid="default-spec"' in page and "vllm/vllm-openai" in page
    assert 'data-testid="login-to-deploy"' in page  # anonymous
    assert client.get("/models/nope/").status_code == 404


def test_estimate_shows_the_vram_and_the_offer_without_deploying(client, templates, market):
    response = client.post(
        "/models/vllm-8b/",
        {"action": "estimate", "env_VLLM_API_KEY": "k", "hf_model": "meta-llama/Llama-3.1-8B-Instruct"},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "8B parameters (from the model id) × 2 bytes (fp16) × 1.2 overhead ≈ 19.2 GB" in page
    assert f"node {market['cheap4090'].id}</a>" in page


def test_an_unsized_model_asks_for_the_size_on_the_field(client, templates):
    response = client.post("/models/vllm-8b/", {"action": "estimate", "env_VLLM_API_KEY": "k", "hf_model": "gpt2"})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-testid="field-error-hf_model_params"' in page and "cannot be told from its id" in page


def test_deploy_requires_login(client, templates, market):
    response = client.post("/models/jupyter-pytorch/", {"action": "deploy", "env_JUPYTER_TOKEN": "t"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_a_missing_required_value_is_shown_on_its_field(renter_client, templates, market):
    response = renter_client.post("/models/ubuntu-ssh/", {"action": "deploy"})
    assert response.status_code == 400
    assert 'data-testid="field-error-env_SSH_PUBLIC_KEY"' in response.content.decode()


def test_deploy_hands_the_pinned_spec_to_the_new_deployment_page(renter_client, templates, market):
    response = renter_client.post("/models/jupyter-pytorch/", {"action": "deploy", "env_JUPYTER_TOKEN": "s3cret"})
    node = market["cheap4090"]
    assert response.status_code == 302
    assert response["Location"] == f"/deployments/new/?node={node.id}&prefill=store"
    assert "s3cret" not in response["Location"]
    prefill = renter_client.session[PREFILL_SESSION_KEY]
    assert prefill["node"] == node.id and prefill["template"] == "jupyter-pytorch"
    spec = spec_from_source(prefill["spec"])
    assert spec.node == node.id and spec.services[0].env == {"JUPYTER_TOKEN": "s3cret"}


def test_deploy_from_an_offer_page_pins_that_node(renter_client, templates, market):
    node = market["dear4090"]
    response = renter_client.post(
        f"/models/ollama/?node={node.id}", {"action": "deploy", "env_OLLAMA_MODEL": "qwen2.5:7b", "node": node.id}
    )
    assert response["Location"] == f"/deployments/new/?node={node.id}&prefill=store"


def test_deploy_when_nothing_fits_explains_and_stays(renter_client, templates, market):
    Node.objects.filter(id=market["h100"].id).delete()
    response = renter_client.post("/models/vllm-32b/", {"action": "deploy", "env_VLLM_API_KEY": "k"})
    assert response.status_code == 409
    page = response.content.decode()
    assert 'data-testid="no-offer"' in page and "It would run on A100 80GB, H100 80GB" in page
    assert PREFILL_SESSION_KEY not in renter_client.session


def test_the_offer_page_lists_the_templates_that_fit_the_node(client, templates, market):
    node = market["cheap4090"]
    page = client.get(f"/gpus/{node.id}/").content.decode()
    listed = [slug for slug in ("vllm-8b", "vllm-14b", "ollama", "comfyui", "jupyter-pytorch", "ubuntu-ssh")
              if f'data-slug="{slug}"' in page]  # fmt: skip
    assert listed == ["vllm-8b", "ollama", "comfyui", "jupyter-pytorch"]
    assert f'href="/models/ollama/?node={node.id}"' in page


def test_a_node_no_template_fits_says_so(client, templates):
    from tests.factories import make_node

    node = make_node(gpu_model="gtx1660")  # 6 GB
    page = client.get(f"/gpus/{node.id}/").content.decode()
    assert 'data-testid="no-fitting-templates"' in page
