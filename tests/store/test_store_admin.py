"""Admins manage templates; a template whose spec would not parse is not saved."""

from __future__ import annotations

import pytest
from django.test import Client

from marketplace.models import Template
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(make_user(email="staff@example.test", is_staff=True, is_superuser=True))
    return client


def _form(template: Template, **changes) -> dict:
    data = {
        "name": template.name, "slug": template.slug, "category": template.category,
        "description": template.description, "active": "on", "order": template.order, "mode": template.mode,
        "gpu_units": template.gpu_units, "min_vram_gb": template.min_vram_gb,
        "gpu_models": '["rtx4090"]', "ports": '[{"port": 8888, "as": 8888, "label": "JupyterLab"}]',
        "env_vars": '[{"name": "JUPYTER_TOKEN", "label": "Token", "required": true, "secret": true}]',
        "hf_model_default": "", "max_price_per_hour": "0.70", "spec_template": template.spec_template,
    }  # fmt: skip
    data.update(changes)
    return data


def test_admin_lists_and_shows_templates(admin_client, templates):
    listing = admin_client.get("/admin/marketplace/template/").content.decode()
    assert "vLLM · 7–8B models (24 GB)" in listing and "Ubuntu with SSH" in listing
    assert admin_client.get(f"/admin/marketplace/template/{templates['ollama'].id}/change/").status_code == 200


def test_admin_saves_a_valid_change(admin_client, templates):
    template = templates["jupyter-pytorch"]
    response = admin_client.post(f"/admin/marketplace/template/{template.id}/change/", _form(template))
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.gpu_models == ["rtx4090"] and str(template.max_price_per_hour) == "0.70"


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({"spec_template": "version: '2.0'\nservices: {}\n"}, "services: must name at least one service"),
        ({"spec_template": "services:\n  a:\n    image: {{ NOPE }}\n"}, "unknown placeholder NOPE"),
        ({"ports": '[{"port": 70000}]'}, "each port is"),
        ({"env_vars": '[{"name": "GPU"}]'}, "GPU is a built-in placeholder"),
        ({"gpu_models": '"rtx4090"'}, "must be a JSON list of strings"),
    ],
)
def test_admin_refuses_a_template_that_would_not_render(admin_client, templates, changes, shown):
    template = templates["jupyter-pytorch"]
    before = template.spec_template
    response = admin_client.post(f"/admin/marketplace/template/{template.id}/change/", _form(template, **changes))
    assert response.status_code == 200
    assert shown in response.content.decode()
    template.refresh_from_db()
    assert template.spec_template == before and template.gpu_models == []


def test_admin_adds_a_template(admin_client, templates):
    source = templates["jupyter-pytorch"]
    data = _form(source, slug="jupyter-4090", name="Jupyter on a 4090")
    response = admin_client.post("/admin/marketplace/template/add/", data)
    assert response.status_code == 302
    assert Template.objects.get(slug="jupyter-4090").gpu_models == ["rtx4090"]
