"""Rendering with the user's values, the fit rules, and the cheapest offer "Deploy" picks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import ApplicationError
from core.money import format_usd
from marketplace.deployments.services import spec_from_source
from marketplace.store import services
from marketplace.store.selectors import template_fits_node, templates_for_node
from providers.models import Node
from tests.factories import make_node

pytestmark = pytest.mark.django_db
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7 ada@laptop"


def test_values_go_into_the_spec(templates):
    rendered = services.template_render(template=templates["ubuntu-ssh"], env_values={"SSH_PUBLIC_KEY": KEY})
    assert rendered.spec.services[0].env == {"SSH_PUBLIC_KEY": KEY}


def test_a_required_value_missing_names_the_field(templates):
    with pytest.raises(ApplicationError) as caught:
        services.template_render(template=templates["vllm-8b"], env_values={"HF_TOKEN": "hf_x"})
    assert caught.value.status == 400
    assert caught.value.extra["field"] == "env.VLLM_API_KEY"
    assert "API key clients must send is required" in caught.value.message


def test_defaults_fill_what_the_user_leaves_empty(templates):
    rendered = services.template_render(template=templates["ollama"], env_values={"OLLAMA_MODEL": "  "})
    assert rendered.spec.services[0].env == {"OLLAMA_MODEL": "llama3.1:8b"}


def test_unknown_and_multiline_values_are_refused_each_by_name(templates):
    with pytest.raises(ApplicationError) as caught:
        services.template_render(template=templates["ubuntu-ssh"], env_values={"SSH_PUBLIC_KEY": "a\nb", "EXTRA": "x"})
    fields = [error["field"] for error in caught.value.extra["errors"]]
    assert fields == ["env.EXTRA", "env.SSH_PUBLIC_KEY"]


def test_a_value_cannot_change_the_spec_structure(templates):
    sneaky = '"}\n    resources: {cpu: {units: 500}}  # x'.replace("\n", " ")
    rendered = services.template_render(template=templates["jupyter-pytorch"], env_values={"JUPYTER_TOKEN": sneaky})
    assert rendered.spec.services[0].env["JUPYTER_TOKEN"] == sneaky
    assert rendered.spec.cpu_cores == 4


def test_a_hugging_face_model_resizes_the_gpu_request(templates):
    rendered = services.template_render(
        template=templates["vllm-8b"], env_values={"VLLM_API_KEY": "k"}, hf_model="Qwen/Qwen2.5-1.5B-Instruct"
    )
    assert rendered.spec.services[0].args[:2] == ["--model", "Qwen/Qwen2.5-1.5B-Instruct"]
    assert rendered.spec.min_vram_gb == 4 and rendered.estimate.vram_gb == Decimal("3.6")
    assert rendered.spec.gpu_models == sorted(templates["vllm-8b"].gpu_models)
    # Larger than the template's GPUs: any GPU with that much memory, and a note that says so.
    big = services.template_render(
        template=templates["vllm-8b"], env_values={"VLLM_API_KEY": "k"}, hf_model="meta-llama/Llama-3.1-70B-Instruct"
    )
    assert big.spec.min_vram_gb == 168 and big.spec.gpu_models == ["b200"]
    assert big.gpu.note == ""


def test_too_large_for_any_gpu_is_explained(templates):
    with pytest.raises(ApplicationError) as caught:
        services.template_render(
            template=templates["vllm-8b"], env_values={"VLLM_API_KEY": "k"}, hf_model="meta-llama/Llama-3.1-405B"
        )
    assert caught.value.extra["field"] == "hf_model"
    assert "972.0 GB" in caught.value.message and "largest GPU has 192 GB" in caught.value.message


def test_an_unknown_size_needs_the_size_field(templates):
    with pytest.raises(ApplicationError) as caught:
        services.template_render(template=templates["vllm-8b"], env_values={"VLLM_API_KEY": "k"}, hf_model="gpt2")
    assert caught.value.extra["field"] == "hf_model_params"
    stated = services.template_render(
        template=templates["vllm-8b"], env_values={"VLLM_API_KEY": "k"}, hf_model="gpt2", hf_model_params="0.2"
    )
    assert stated.spec.min_vram_gb == 1


def test_a_template_without_a_model_refuses_a_model_id(templates):
    with pytest.raises(ApplicationError) as caught:
        services.template_render(template=templates["ollama"], hf_model="Qwen/Qwen2.5-7B")
    assert caught.value.extra["field"] == "hf_model"


# --- Fit rules -----------------------------------------------------------------------------------


def test_templates_that_fit_a_node(templates, market):
    fitting = {node: {t.slug for t in templates_for_node(market[node])} for node in market}
    # A 24 GB fizz card: the 8B vLLM (its list has the 4090), Ollama, ComfyUI, Jupyter; not provider-only SSH.
    assert fitting["cheap4090"] == {"vllm-8b", "ollama", "comfyui", "jupyter-pytorch"}
    assert fitting["l40s"] == {"vllm-8b", "vllm-14b", "ollama", "comfyui", "jupyter-pytorch"}
    assert fitting["h100"] == {"vllm-8b", "vllm-14b", "vllm-32b", "ollama", "comfyui", "jupyter-pytorch", "ubuntu-ssh"}


def test_fit_needs_a_listed_model_and_enough_vram(templates):
    small = make_node(gpu_model="rtx3060")  # 12 GB, not in vLLM's list
    apple = make_node(gpu_model="apple-m2-max")  # 96 GB of unified memory, not a discrete GPU
    cpu = make_node(gpu_model="cpu-general", mode="provider", trust_tier=2)
    assert {t.slug for t in templates_for_node(small)} == {"ollama", "comfyui", "jupyter-pytorch"}
    assert templates_for_node(apple) == [] and templates_for_node(cpu) == []
    templates["ollama"].gpu_models = ["rtx4090"]
    assert not template_fits_node(templates["ollama"], small)
    templates["ollama"].active = False
    templates["ollama"].save()
    assert "ollama" not in {t.slug for t in templates_for_node(Node.objects.get(id=small.id))}


# --- The cheapest offer that fits --------------------------------------------------------------


def test_deploy_picks_the_cheapest_offer_that_fits_and_pins_it(templates, market):
    plan = services.template_plan(template=templates["jupyter-pytorch"], env_values={"JUPYTER_TOKEN": "t"})
    assert plan.offer.node.id == market["cheap4090"].id
    spec = spec_from_source(plan.pinned.text)
    assert spec.node == market["cheap4090"].id and spec.mode == "fizz"
    # The price covers the share with 20% to spare, rounded up to the cent: $0.15 GPU + 4 cores, 16 GB, 50 GB.
    assert plan.offer.share_price_micros == 150_000 + (2 * (4 * 750_000 + 16 * 100_000 + 50 * 10_000) + 730) // 1460
    assert plan.offer.share_price_micros == 156_986
    assert spec.max_price_per_hour_micros == 190_000  # 0.156986 × 1.2 = 0.1884 → $0.19


def test_a_busy_node_is_skipped(templates, market):
    Node.objects.filter(id=market["cheap4090"].id).update(available_gpus=0)
    plan = services.template_plan(template=templates["jupyter-pytorch"], env_values={"JUPYTER_TOKEN": "t"})
    assert plan.offer.node.id == market["dear4090"].id


def test_a_bigger_model_moves_to_a_bigger_gpu(templates, market):
    plan = services.template_plan(
        template=templates["vllm-8b"], env_values={"VLLM_API_KEY": "k"}, hf_model="Qwen/Qwen2.5-14B-Instruct"
    )
    assert plan.rendered.gpu.min_vram_gb == 34
    assert plan.offer.node.id == market["l40s"].id


def test_either_mode_template_can_land_on_a_provider_node(templates, market):
    plan = services.template_plan(template=templates["vllm-32b"], env_values={"VLLM_API_KEY": "k"})
    assert plan.offer.node.id == market["h100"].id
    spec = spec_from_source(plan.pinned.text)
    assert spec.mode == "provider" and spec.tiers == [1, 2, 3]


def test_no_offer_fits_says_what_would(templates, market):
    Node.objects.filter(id=market["h100"].id).update(available_memory_gb=64)  # listed, without 128 GB free
    plan = services.template_plan(template=templates["vllm-32b"], env_values={"VLLM_API_KEY": "k"})
    assert plan.offer is None and plan.pinned is None
    assert plan.message.startswith("No offer fits vLLM · 30–32B models (80 GB) right now: it needs 1 GPU with ≥ 80 GB")
    assert "It would run on A100 80GB, H100 80GB, H200 141GB or B200 192GB: 1 such offer is listed" in plan.message
    Node.objects.filter(id=market["h100"].id).delete()
    plan = services.template_plan(template=templates["vllm-32b"], env_values={"VLLM_API_KEY": "k"})
    assert "none of those is on offer. The most VRAM on offer is 48 GB per GPU." in plan.message


def test_provider_only_template_says_where_the_gpus_are(templates, db):
    node = make_node(gpu_model="rtx4090")  # fizz only
    plan = services.template_plan(template=templates["ubuntu-ssh"], env_values={"SSH_PUBLIC_KEY": KEY})
    assert plan.offer is None
    price = format_usd(Node.objects.get(id=node.id).price_per_gpu_hour_micros, places=2)
    assert f"It would run on any GPU: 1 listed in fizz mode only (from {price}/GPU-hour)" in plan.message


def test_a_named_node_is_used_only_if_it_fits(templates, market):
    plan = services.template_plan(
        template=templates["jupyter-pytorch"], env_values={"JUPYTER_TOKEN": "t"}, node_id=market["dear4090"].id
    )
    assert plan.offer.node.id == market["dear4090"].id
    refused = services.template_plan(
        template=templates["vllm-14b"], env_values={"VLLM_API_KEY": "k"}, node_id=market["cheap4090"].id
    )
    assert refused.offer is None
    assert refused.message.startswith(f"Node {market['cheap4090'].id} cannot take vLLM · 13–14B models (48 GB)")
