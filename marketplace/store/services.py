"""Rendering a model-store template into a spec, and the plan "Deploy" follows: the cheapest offer
that fits, the spec pinned to it at a price that covers its share.

A placeholder (`{{ NAME }}`) stands for a whole YAML value and is replaced by a JSON value (a
quoted string, a number, a flow list or mapping), so what a user types can never change the
spec's structure. Every rendered spec goes through the deployments' own parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.http import Http404

from core.errors import ApplicationError
from marketplace.deployments.services import spec_from_source
from marketplace.deployments.spec import Spec, SpecError
from marketplace.models import Template, TemplateMode
from marketplace.store import hf
from marketplace.store.selectors import OfferChoice, cheapest_fitting_offer, gpu_vram_by_model, no_fit_reason
from providers.capacity import Request
from providers.models import NodeMode

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
BUILTINS = ("GPU", "PORTS", "ENV", "MODE", "TIERS", "MAX_PRICE", "HF_MODEL")
DEPLOYMENT_LINE = re.compile(r"^deployment:[ \t]*(#.*)?$", re.MULTILINE)
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,60}", re.ASCII)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_ENV_VALUE = 4096
MAX_ENV_VALUES = 50
# The pinned spec's max price sits this much above the node's price for the share (as "Rent" does),
# so that a small price change between the page and the match does not fail the order.
PRICE_MARGIN = Decimal("1.2")
TIERS = {NodeMode.FIZZ: ["community"], NodeMode.PROVIDER: ["secured"]}
PREFILL_SESSION_KEY = "deployment_new_prefill"


@dataclass(frozen=True)
class GpuNeed:
    units: int
    min_vram_gb: int
    gpu_models: list[str]
    note: str = ""

    def as_spec(self) -> dict[str, Any] | None:
        if not self.units:
            return None
        gpu: dict[str, Any] = {"units": self.units}
        if self.gpu_models:
            gpu["model"] = self.gpu_models
        if self.min_vram_gb:
            gpu["req_vram"] = f">={self.min_vram_gb}"
        return gpu


@dataclass
class Rendered:
    template: Template
    text: str
    spec: Spec
    mode: str
    gpu: GpuNeed
    env: dict[str, str]
    hf_model: str
    estimate: hf.VramEstimate | None
    node_id: int | None = None


@dataclass
class Plan:
    """What "Deploy" does: the spec, and the cheapest offer that fits with the spec pinned to it,
    or why none fits."""

    rendered: Rendered
    offer: OfferChoice | None
    pinned: Rendered | None
    message: str = ""
    requests: list[Request] = field(default_factory=list)


def template_get(*, slug: str) -> Template:
    """An active template by slug, or a 404."""
    template = Template.objects.filter(slug=slug, active=True).first() if SLUG.fullmatch(slug) else None
    if template is None:
        raise Http404(f"No template {slug[:60]!r} in the model store.")
    return template


def env_var_list(template: Template) -> list[dict[str, Any]]:
    """The template's variables with every key filled in."""
    return [
        {
            "name": str(item.get("name", "")),
            "label": str(item.get("label") or item.get("name", "")),
            "required": bool(item.get("required", False)),
            "secret": bool(item.get("secret", False)),
            "default": str(item.get("default") or ""),
            "help": str(item.get("help") or ""),
        }
        for item in template.env_vars
        if isinstance(item, dict)
    ]


def env_values_clean(
    template: Template, values: dict[str, Any] | None, *, fill_missing: bool = False
) -> dict[str, str]:
    """The user's values for the template's variables, defaults filled in. A required one missing,
    an unknown name or a value that cannot go in a spec is an ApplicationError naming every bad
    field (`extra.field` is the first, `extra.errors` all). `fill_missing`: a required value
    missing becomes `<NAME>` (the default spec shown before anyone fills it in)."""
    values = values or {}
    variables = env_var_list(template)
    known = {var["name"] for var in variables}
    errors = []
    if len(values) > MAX_ENV_VALUES:
        errors.append({"field": "env", "message": f"at most {MAX_ENV_VALUES} values"})
    for name in list(values)[:MAX_ENV_VALUES]:
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            errors.append(
                {"field": f"env.{name}"[:140], "message": f"not a variable of this template (it has: {listed})"}
            )
    result = {}
    for var in variables:
        raw = values.get(var["name"])
        if raw is not None and not isinstance(raw, str):
            errors.append({"field": f"env.{var['name']}", "message": "must be text"})
            continue
        value = (raw or "").strip() or var["default"]
        if not value:
            if var["required"]:
                if fill_missing:
                    result[var["name"]] = f"<{var['name']}>"
                else:
                    errors.append({"field": f"env.{var['name']}", "message": f"{var['label']} is required"})
            continue
        if len(value) > MAX_ENV_VALUE:
            errors.append({"field": f"env.{var['name']}", "message": f"at most {MAX_ENV_VALUE} characters"})
        elif any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            errors.append({"field": f"env.{var['name']}", "message": "must be one line without control characters"})
        else:
            result[var["name"]] = value
    if errors:
        summary = "; ".join(f"{error['field']}: {error['message']}" for error in errors[:5])
        raise ApplicationError(summary, {"field": errors[0]["field"], "errors": errors})
    return result


def gpu_need(template: Template, estimate: hf.VramEstimate | None) -> GpuNeed:
    """The GPU request: the template's own, or sized for the model the user named."""
    if not template.gpu_units:
        return GpuNeed(units=0, min_vram_gb=0, gpu_models=[])
    models = [str(slug) for slug in template.gpu_models]
    if estimate is None:
        return GpuNeed(units=template.gpu_units, min_vram_gb=template.min_vram_gb, gpu_models=models)
    vram = gpu_vram_by_model()
    largest = max(vram.values(), default=0)
    if estimate.min_vram_gb > largest:
        raise ApplicationError(
            f"hf_model: {estimate.model_id} needs about {estimate.vram_gb} GB of VRAM on one GPU, and the largest GPU "
            f"has {largest} GB; pick a quantised version (an AWQ or GPTQ id) or a smaller model",
            {"field": "hf_model", "vram_gb": str(estimate.vram_gb)},
        )
    fitting = [slug for slug in models if vram.get(slug, 0) >= estimate.min_vram_gb]
    note = ""
    if models and not fitting:
        note = (
            f"None of this template's GPUs has {estimate.min_vram_gb} GB; the spec asks for any GPU with "
            f"≥ {estimate.min_vram_gb} GB instead."
        )
    return GpuNeed(units=template.gpu_units, min_vram_gb=estimate.min_vram_gb, gpu_models=fitting, note=note)


def _price_text(value: Decimal) -> str:
    return str(max(value.quantize(Decimal("0.01"), rounding=ROUND_CEILING), Decimal("0.01")))


def placeholders_in(text: str) -> list[str]:
    return list(dict.fromkeys(PLACEHOLDER.findall(text)))


def spec_text_render(
    template: Template,
    *,
    env: dict[str, str],
    hf_model: str,
    gpu: GpuNeed,
    mode: str,
    max_price: Decimal,
    node_id: int | None = None,
) -> str:
    """The template's text with every placeholder replaced, pinned to `node_id` if given. An
    unknown placeholder is an ApplicationError (an admin's mistake, caught when they save)."""
    ports = [
        {"port": int(item["port"]), "as": int(item.get("as", item["port"]))}
        for item in template.ports
        if isinstance(item, dict) and "port" in item
    ]
    values: dict[str, Any] = {
        "GPU": gpu.as_spec(),
        "PORTS": ports,
        "ENV": env,
        "MODE": mode,
        "TIERS": TIERS[mode],
        "HF_MODEL": hf_model,
        **{name: value for name, value in env.items() if name not in BUILTINS},
    }
    unknown = [name for name in placeholders_in(template.spec_template) if name not in values and name != "MAX_PRICE"]
    if unknown:
        raise ApplicationError(
            f"spec_template: unknown placeholder{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (use "
            f"{', '.join(BUILTINS)} or a variable's name)",
            {"field": "spec_template"},
        )

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name == "MAX_PRICE":
            return _price_text(max_price)
        return json.dumps(values[name], ensure_ascii=False)

    text = PLACEHOLDER.sub(replace, template.spec_template)
    if node_id is not None:
        found = DEPLOYMENT_LINE.search(text)
        if found is None:
            raise ApplicationError(
                "spec_template: has no top-level 'deployment:' line to pin a node under", {"field": "spec_template"}
            )
        pin = f"\n  attributes: {{node: {node_id}}}   # pinned to the offer the model store chose"
        text = text[: found.end()] + pin + text[found.end() :]
    return text


def template_render(
    *,
    template: Template,
    env_values: dict[str, Any] | None = None,
    hf_model: str = "",
    hf_model_params: str | Decimal | None = None,
    mode: str | None = None,
    node_id: int | None = None,
    max_price: Decimal | None = None,
    fill_missing: bool = False,
) -> Rendered:
    """The template as a spec the deployments parser accepts (parsed here: a SpecError says why
    not). `hf_model`: a Hugging Face id to serve instead of the template's own, its VRAM estimated
    from its size (`hf_model_params` in billions, else read from the id)."""
    env = env_values_clean(template, env_values, fill_missing=fill_missing)
    params = hf.params_parse(hf_model_params)
    estimate = None
    if hf_model.strip() or params is not None:
        if not template.hf_model_default:
            raise ApplicationError(
                f"hf_model: {template.name} serves no Hugging Face model; leave the model id empty",
                {"field": "hf_model"},
            )
        estimate = hf.vram_estimate(model_id=hf_model.strip() or template.hf_model_default, params_b=params)
        model_id = estimate.model_id
    else:
        model_id = template.hf_model_default
    gpu = gpu_need(template, estimate)
    mode = mode or (NodeMode.FIZZ if template.mode == TemplateMode.ANY else template.mode)
    text = spec_text_render(
        template,
        env=env,
        hf_model=model_id,
        gpu=gpu,
        mode=mode,
        max_price=template.max_price_per_hour if max_price is None else max_price,
        node_id=node_id,
    )
    spec = spec_from_source(text)
    return Rendered(
        template=template, text=text, spec=spec, mode=mode, gpu=gpu, env=env, hf_model=model_id if
        template.hf_model_default else "", estimate=estimate, node_id=node_id,
    )  # fmt: skip


def template_modes(template: Template) -> list[str]:
    return [NodeMode.FIZZ, NodeMode.PROVIDER] if template.mode == TemplateMode.ANY else [template.mode]


def offer_request(spec: Spec, *, mode: str, node_id: int | None) -> Request:
    """What a node must have for `spec` in `mode` (its tiers follow the mode), pinned to `node_id`."""
    request = Request.from_spec(spec.canonical())
    request.mode = mode
    request.tiers = list(spec.tiers) if mode == spec.mode else [1, 2, 3] if mode == NodeMode.PROVIDER else [4, 5, 6, 7]
    request.node = node_id
    return request


def template_plan(
    *,
    template: Template,
    env_values: dict[str, Any] | None = None,
    hf_model: str = "",
    hf_model_params: str | Decimal | None = None,
    node_id: int | None = None,
) -> Plan:
    """Render, find the cheapest offer that fits (or check `node_id` fits), and pin the spec to it
    at the share's price plus a margin. No offer: the plan's message says what would fit."""
    rendered = template_render(
        template=template, env_values=env_values, hf_model=hf_model, hf_model_params=hf_model_params
    )
    requests = [offer_request(rendered.spec, mode=mode, node_id=node_id) for mode in template_modes(template)]
    offer = cheapest_fitting_offer(requests=requests)
    if offer is None:
        message = no_fit_reason(template=template, requests=requests, node_id=node_id)
        return Plan(rendered=rendered, offer=None, pinned=None, message=message, requests=requests)
    price = Decimal(offer.share_price_micros) * PRICE_MARGIN / 1_000_000
    pinned = template_render(
        template=template,
        env_values=env_values,
        hf_model=hf_model,
        hf_model_params=hf_model_params,
        mode=offer.node.mode,
        node_id=offer.node.id,
        max_price=price,
    )
    return Plan(rendered=rendered, offer=offer, pinned=pinned, requests=requests)


def template_check(template: Template) -> list[str]:
    """What is wrong with a template an admin is saving: its placeholders, its default spec, its
    pinned spec. Empty when it renders and parses."""
    problems = []
    names = [var["name"] for var in env_var_list(template)]
    for name in names:
        if not ENV_NAME.match(name):
            problems.append(f"env_vars: {name!r} is not a variable name (letters, digits, _)")
        elif name in BUILTINS:
            problems.append(f"env_vars: {name} is a built-in placeholder; name the variable otherwise")
    if len(set(names)) != len(names):
        problems.append("env_vars: a name appears twice")
    if problems:
        return problems
    try:
        for mode in template_modes(template):
            for node_id in (None, 1):
                rendered = template_render(
                    template=template, mode=mode, node_id=node_id, max_price=Decimal("1"), fill_missing=True
                )
                if rendered.spec.mode != mode:
                    problems.append("spec_template: the deployment's mode must be {{ MODE }}")
                    return problems
    except SpecError as exc:
        problems += [f"spec_template: {error['field']}: {error['message']}" for error in exc.errors]
    except ApplicationError as exc:
        problems.append(exc.message)
    return problems
