"""GET /api/v1/templates, GET /api/v1/templates/{slug}, POST /api/v1/templates/{slug}/render."""

from __future__ import annotations

import pytest

from marketplace.deployments.services import spec_from_source

pytestmark = pytest.mark.django_db


def _render(client, slug: str, body: dict):
    return client.post(f"/api/v1/templates/{slug}/render", body, content_type="application/json")


def test_list_has_every_active_template_with_what_a_user_fills_in(client, templates):
    templates["comfyui"].active = False
    templates["comfyui"].save()
    response = client.get("/api/v1/templates")
    assert response.status_code == 200
    items = {item["slug"]: item for item in response.json()}
    assert "comfyui" not in items and len(items) == 6
    vllm = items["vllm-8b"]
    assert vllm["min_vram_gb"] == 24 and "rtx4090" in vllm["gpu_models"] and vllm["mode"] == "any"
    assert vllm["ports"] == [{"port": 8000, "as": 8000, "label": "OpenAI-compatible API"}]
    assert [var["name"] for var in vllm["env_vars"]] == ["VLLM_API_KEY", "HF_TOKEN"]
    assert vllm["hf_model_default"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert vllm["page_url"].endswith("/models/vllm-8b/")
    spec = spec_from_source(vllm["default_spec"])
    assert spec.services[0].env["VLLM_API_KEY"] == "<VLLM_API_KEY>"


def test_one_template_and_an_unknown_one(client, templates):
    assert client.get("/api/v1/templates/ubuntu-ssh").json()["mode"] == "provider"
    for slug in ("nope", "bad%00slug", "x" * 80):
        response = client.get(f"/api/v1/templates/{slug}")
        assert response.status_code == 404
        assert "message" in response.json()


def test_render_returns_the_spec_and_the_cheapest_offer(client, templates, market):
    response = _render(client, "jupyter-pytorch", {"env": {"JUPYTER_TOKEN": "s3cret"}})
    assert response.status_code == 200
    data = response.json()
    assert data["offer"]["node_id"] == market["cheap4090"].id
    assert data["offer"]["price_per_hour"] == "0.156986"
    assert spec_from_source(data["spec"]).node is None
    pinned = spec_from_source(data["pinned_spec"])
    assert pinned.node == market["cheap4090"].id and pinned.services[0].env == {"JUPYTER_TOKEN": "s3cret"}
    assert data["message"] is None and data["estimate"] is None


def test_render_with_a_hugging_face_model_shows_the_estimate(client, templates, market):
    body = {"env": {"VLLM_API_KEY": "k"}, "hf_model": "meta-llama/Llama-3.1-8B-Instruct"}
    data = _render(client, "vllm-8b", body).json()
    assert data["estimate"]["vram_gb"] == "19.2" and data["estimate"]["min_vram_gb"] == 20
    assert data["gpu"]["min_vram_gb"] == 20
    assert data["offer"]["node_id"] == market["cheap4090"].id


def test_render_without_a_required_value_is_a_400_naming_it(client, templates, market):
    response = _render(client, "ubuntu-ssh", {"env": {}})
    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "env.SSH_PUBLIC_KEY"
    assert "SSH public key is required" in response.json()["message"]


def test_render_with_an_unsized_model_is_a_400_asking_for_the_size(client, templates):
    response = _render(client, "vllm-8b", {"env": {"VLLM_API_KEY": "k"}, "hf_model": "openai-community/gpt2"})
    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "hf_model_params"
    ok = _render(client, "vllm-8b", {"env": {"VLLM_API_KEY": "k"}, "hf_model": "gpt2", "hf_model_params": "0.124"})
    assert ok.status_code == 200 and ok.json()["estimate"]["min_vram_gb"] == 1


def test_render_when_nothing_fits_says_what_would(client, templates, market):
    body = {"env": {"SSH_PUBLIC_KEY": "ssh-ed25519 AAAA x"}, "node_id": market["l40s"].id}
    data = _render(client, "ubuntu-ssh", body).json()
    assert data["offer"] is None and data["pinned_spec"] is None
    assert data["message"].startswith(f"Node {market['l40s'].id} cannot take Ubuntu with SSH")


def test_render_refuses_a_value_that_cannot_go_in_a_spec(client, templates):
    response = _render(client, "jupyter-pytorch", {"env": {"JUPYTER_TOKEN": "a\x00b"}})
    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "env.JUPYTER_TOKEN"


@pytest.mark.parametrize(
    "body",
    [
        {"env": {"JUPYTER_TOKEN": 5}},
        {"env": {"JUPYTER_TOKEN": "t"}, "node_id": 0},
        {"env": {"JUPYTER_TOKEN": "t"}, "surprise": True},
        {"env": {"JUPYTER_TOKEN": "t"}, "hf_model": "x" * 201},
    ],
)
def test_render_refuses_malformed_input(client, templates, body):
    response = _render(client, "jupyter-pytorch", body)
    assert response.status_code == 422
    assert response.json()["extra"]["errors"]
