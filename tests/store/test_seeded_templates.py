"""The data migration's templates: the five kinds of the store (vLLM in three sizes), real images,
and specs the deployments parser accepts, unpinned and pinned, in every mode each runs in."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketplace.deployments.services import spec_from_source
from marketplace.models import TemplateMode
from marketplace.store import services

pytestmark = pytest.mark.django_db

IMAGES = {
    "vllm-8b": "vllm/vllm-openai:",
    "vllm-14b": "vllm/vllm-openai:",
    "vllm-32b": "vllm/vllm-openai:",
    "ollama": "ollama/ollama:",
    "comfyui": "yanwk/comfyui-boot:",
    "jupyter-pytorch": "quay.io/jupyter/pytorch-notebook:",
    "ubuntu-ssh": "ubuntu:24.04",
}


def test_the_store_is_seeded_with_each_kind_of_deployment(templates):
    assert set(templates) == set(IMAGES)
    categories = {slug: template.category for slug, template in templates.items()}
    assert {categories["vllm-8b"], categories["ollama"]} == {"llm"}
    assert categories["comfyui"] == "image" and categories["jupyter-pytorch"] == "notebook"
    assert templates["ubuntu-ssh"].mode == TemplateMode.PROVIDER
    # vLLM in sizes by VRAM, each listing only GPUs with that much memory.
    assert [templates[s].min_vram_gb for s in ("vllm-8b", "vllm-14b", "vllm-32b")] == [24, 48, 80]
    assert "rtx4090" in templates["vllm-8b"].gpu_models and "rtx4090" not in templates["vllm-14b"].gpu_models


@pytest.mark.parametrize("slug", sorted(IMAGES))
def test_each_seeded_template_renders_a_valid_spec(templates, slug):
    template = templates[slug]
    assert services.template_check(template) == []
    modes = ["fizz", "provider"] if template.mode == TemplateMode.ANY else [template.mode]
    for mode in modes:
        rendered = services.template_render(template=template, mode=mode, fill_missing=True)
        spec = spec_from_source(rendered.text)  # parsed again, from the text a user would get
        service = spec.services[0]
        assert service.image.startswith(IMAGES[slug])
        assert spec.mode == mode and spec.node is None
        assert spec.min_vram_gb == template.min_vram_gb and spec.gpu_units == 1
        assert spec.gpu_models == sorted(template.gpu_models)
        assert [port["port"] for port in service.ports] == [port["port"] for port in template.ports]
        assert spec.max_price_per_hour_micros == int(template.max_price_per_hour * 1_000_000)
        pinned = services.template_render(
            template=template, mode=mode, node_id=42, max_price=Decimal("0.5"), fill_missing=True
        )
        assert spec_from_source(pinned.text).node == 42


def test_variables_a_user_fills_in_are_listed_with_their_flags(templates):
    ssh = services.env_var_list(templates["ubuntu-ssh"])
    assert ssh[0]["name"] == "SSH_PUBLIC_KEY" and ssh[0]["required"] and not ssh[0]["secret"]
    jupyter = services.env_var_list(templates["jupyter-pytorch"])[0]
    assert jupyter["name"] == "JUPYTER_TOKEN" and jupyter["required"] and jupyter["secret"]
    vllm = {var["name"]: var for var in services.env_var_list(templates["vllm-8b"])}
    assert vllm["HF_TOKEN"]["secret"] and not vllm["HF_TOKEN"]["required"]
    # Before anyone fills it in, a required value shows as <NAME> in the default spec.
    default = services.template_render(template=templates["ubuntu-ssh"], fill_missing=True)
    assert '"SSH_PUBLIC_KEY": "<SSH_PUBLIC_KEY>"' in default.text
