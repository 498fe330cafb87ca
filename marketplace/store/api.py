"""/api/v1/templates: the model store's templates, and a template rendered into a spec with the
cheapest offer that fits it. Public, as the catalog is.

Thin: parse, call marketplace.store.services, shape the output. A required variable missing, an
unknown one, a bad Hugging Face id or a model whose size cannot be told are 400 with `extra.field`
(and `extra.errors` when several); an unknown template is 404.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from ninja import Router
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from core.money import exact_usd
from core.schemas import ERRORS, NoNulIn
from marketplace.models import Template
from marketplace.store import services
from marketplace.store.selectors import template_list

router = Router(tags=["templates"])
MAX_NODE_ID = 2**62


class EnvVarOut(BaseModel):
    name: str
    label: str
    required: bool
    secret: bool = Field(description="Shown as a password field; its value is still part of the spec")
    default: str
    help: str


class TemplateOut(BaseModel):
    slug: str
    name: str
    description: str
    category: str
    mode: str = Field(description="fizz, provider, or any (the cheapest offer decides)")
    gpu_units: int
    min_vram_gb: int = Field(description="Memory per GPU it needs, GB")
    gpu_models: list[str] = Field(description="GPU model slugs it runs on; empty: any GPU with enough memory")
    ports: list[dict[str, Any]] = Field(description="[{port, as, label}]")
    env_vars: list[EnvVarOut]
    hf_model_default: str = Field(description="The Hugging Face model it serves; empty: it takes no model id")
    max_price_per_hour: str = Field(description="The default spec's max price, USD per hour")
    default_spec: str = Field(description="The spec with the defaults; a required variable shows as <NAME>")
    page_url: str


class TemplateRenderIn(NoNulIn):
    model_config = ConfigDict(extra="forbid")

    env: dict[StrictStr, StrictStr] = Field(default_factory=dict, description="Values of the template's variables")
    hf_model: StrictStr = Field("", max_length=200, description="A Hugging Face model id to serve instead")
    hf_model_params: StrictStr | None = Field(
        None, max_length=12, description="The model's size in billions of parameters, when its id does not say"
    )
    node_id: int | None = Field(None, ge=1, le=MAX_NODE_ID, description="Pin to this node instead of the cheapest")


class VramEstimateOut(BaseModel):
    model_id: str
    params_b: str
    stated: bool
    precision: str
    bytes_per_param: str
    vram_gb: str
    min_vram_gb: int
    explanation: str


class GpuOut(BaseModel):
    units: int
    min_vram_gb: int
    gpu_models: list[str]
    note: str


class OfferChoiceOut(BaseModel):
    node_id: int
    provider: str
    gpu_model: str
    region: str
    mode: str
    price_per_hour: str = Field(description="The node's price for this template's share, USD per hour")


class TemplateRenderOut(BaseModel):
    template: str
    spec: str = Field(description="The rendered spec, not pinned, at the template's default max price")
    gpu: GpuOut
    estimate: VramEstimateOut | None
    offer: OfferChoiceOut | None = Field(description="The cheapest offer that fits; null when none does")
    pinned_spec: str | None = Field(description="The spec pinned to that offer at its share's price plus 20%")
    message: str | None = Field(description="When no offer fits: why, and what would")


def _template_out(request: HttpRequest, template: Template) -> dict[str, Any]:
    rendered = services.template_render(template=template, fill_missing=True)
    return {
        "slug": template.slug,
        "name": template.name,
        "description": template.description,
        "category": template.category,
        "mode": template.mode,
        "gpu_units": template.gpu_units,
        "min_vram_gb": template.min_vram_gb,
        "gpu_models": list(template.gpu_models),
        "ports": list(template.ports),
        "env_vars": services.env_var_list(template),
        "hf_model_default": template.hf_model_default,
        "max_price_per_hour": str(template.max_price_per_hour),
        "default_spec": rendered.text,
        "page_url": request.build_absolute_uri(reverse("store:detail", args=[template.slug])),
    }


@router.get("", response={200: list[TemplateOut], **ERRORS}, operation_id="templates_list", summary="Templates")
def templates_list(request: HttpRequest):
    return [_template_out(request, template) for template in template_list()]


@router.get("/{slug}", response={200: TemplateOut, **ERRORS}, operation_id="templates_get", summary="One template")
def templates_get(request: HttpRequest, slug: str):
    return _template_out(request, services.template_get(slug=slug))


@router.post(
    "/{slug}/render",
    response={200: TemplateRenderOut, **ERRORS},
    operation_id="templates_render",
    summary="Render a template: its spec, the cheapest offer that fits and the spec pinned to it",
)
def templates_render(request: HttpRequest, slug: str, payload: TemplateRenderIn):
    template = services.template_get(slug=slug)
    plan = services.template_plan(
        template=template,
        env_values=payload.env,
        hf_model=payload.hf_model,
        hf_model_params=payload.hf_model_params,
        node_id=payload.node_id,
    )
    rendered, offer, estimate = plan.rendered, plan.offer, plan.rendered.estimate
    return {
        "template": template.slug,
        "spec": rendered.text,
        "gpu": {
            "units": rendered.gpu.units,
            "min_vram_gb": rendered.gpu.min_vram_gb,
            "gpu_models": rendered.gpu.gpu_models,
            "note": rendered.gpu.note,
        },
        "estimate": None
        if estimate is None
        else {
            "model_id": estimate.model_id,
            "params_b": str(estimate.params_b),
            "stated": estimate.stated,
            "precision": estimate.precision,
            "bytes_per_param": str(estimate.bytes_per_param),
            "vram_gb": str(estimate.vram_gb),
            "min_vram_gb": estimate.min_vram_gb,
            "explanation": estimate.explanation,
        },
        "offer": None
        if offer is None
        else {
            "node_id": offer.node.id,
            "provider": offer.node.provider.display_name,
            "gpu_model": offer.node.gpu_model_id,
            "region": offer.node.region_id,
            "mode": offer.node.mode,
            "price_per_hour": exact_usd(offer.share_price_micros),
        },
        "pinned_spec": plan.pinned.text if plan.pinned else None,
        "message": plan.message or None,
    }
