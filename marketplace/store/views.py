"""Model store pages: /models/ (the templates, each with the cheapest offer that fits now) and
/models/<slug>/ (its form: variables, a Hugging Face model with its VRAM estimate, "Deploy").

"Deploy" renders the template, picks the cheapest offer that fits, pins the spec to it and opens
the new-deployment page with that spec (handed over in the session under PREFILL_SESSION_KEY,
never in the URL: it can hold secrets).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode

from core.errors import ApplicationError
from marketplace.deployments.spec import SpecError
from marketplace.models import Template, TemplateCategory
from marketplace.store.forms import TemplateForm
from marketplace.store.selectors import cheapest_fitting_offer, template_list
from marketplace.store.services import (
    PREFILL_SESSION_KEY,
    Plan,
    env_var_list,
    offer_request,
    template_get,
    template_modes,
    template_plan,
    template_render,
)

MAX_NODE_ID = 2**62


def _default_preview(template: Template) -> dict[str, Any]:
    """The template's spec before anyone fills it in, and the cheapest offer that fits it now."""
    try:
        rendered = template_render(template=template, fill_missing=True)
    except ApplicationError as exc:  # an admin saved a template that no longer renders
        return {"problem": exc.message}
    requests = [offer_request(rendered.spec, mode=mode, node_id=None) for mode in template_modes(template)]
    return {"rendered": rendered, "offer": cheapest_fitting_offer(requests=requests)}


def store_catalog(request: HttpRequest) -> HttpResponse:
    labels = dict(TemplateCategory.choices)
    groups: dict[str, list[dict[str, Any]]] = {}
    for template in template_list():
        groups.setdefault(template.category, []).append({"template": template, **_default_preview(template)})
    categories = [{"key": key, "label": labels.get(key, key), "items": items} for key, items in groups.items()]
    return render(request, "store/catalog.html", {"categories": categories})


def _node_param(request: HttpRequest) -> int | None:
    raw = request.GET.get("node", "").strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) <= MAX_NODE_ID:
        return int(raw)
    return None


def store_detail(request: HttpRequest, slug: str) -> HttpResponse:
    template = template_get(slug=slug)
    plan: Plan | None = None
    status = 200
    if request.method == "POST":
        action = "estimate" if request.POST.get("action") == "estimate" else "deploy"
        if action == "deploy" and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        form = TemplateForm(request.POST, template=template)
        if form.is_valid():
            try:
                plan = template_plan(
                    template=template,
                    env_values=form.env_values(),
                    hf_model=form.cleaned_data.get("hf_model") or "",
                    hf_model_params=form.cleaned_data.get("hf_model_params") or None,
                    node_id=form.cleaned_data.get("node"),
                )
            except SpecError as exc:
                form.add_error(None, exc.message)
            except ApplicationError as exc:
                field = exc.extra.get("field", "")
                # A single error's message starts with its field ("hf_model: ..."), shown beside it.
                single = {"field": field, "message": exc.message.split(": ", 1)[-1] if field else exc.message}
                for error in exc.extra.get("errors") or [single]:
                    form.add_application_error(error["field"], error["message"])
        if not form.is_valid():
            status = 400
        elif plan is not None and plan.offer is not None and action == "deploy":
            request.session[PREFILL_SESSION_KEY] = {
                "spec": plan.pinned.text,  # type: ignore[union-attr]
                "node": plan.offer.node.id,
                "template": template.slug,
                "name": template.name,
            }
            query = urlencode({"node": plan.offer.node.id, "prefill": "store"})
            return redirect(f"{reverse('deployments:new')}?{query}")
        elif plan is not None and plan.offer is None and action == "deploy":
            status = 409
    else:
        form = TemplateForm(template=template, initial={"node": _node_param(request)})
    node_id = form.cleaned_data.get("node") if form.is_bound and hasattr(form, "cleaned_data") else _node_param(request)
    context = {
        "template": template,
        "form": form,
        "env_fields": [form[name] for name, _var in form.env_names],
        "env_vars": env_var_list(template),
        "plan": plan,
        "node_id": node_id,
        "preview": None if plan else _default_preview(template),
        "login_url": f"{reverse('account_login')}?{urlencode({'next': request.get_full_path()})}",
    }
    return render(request, "store/detail.html", context, status=status)
