"""Every model of ours names its rows: the admin's titles, history and delete pages show str(row)."""

from __future__ import annotations

from django.apps import apps
from django.db import models

OUR_APPS = ("accounts", "billing", "marketplace", "providers")


def test_every_model_has_a_readable_str():
    generic = [
        model.__name__
        for app in OUR_APPS
        for model in apps.get_app_config(app).get_models()
        if model.__str__ is models.Model.__str__
    ]
    assert generic == [], f"these models would show as 'X object (1)': {generic}"
