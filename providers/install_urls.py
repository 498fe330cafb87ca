"""/fizz/: the node agent's install page, script and wheel (providers/install_views.py)."""

from __future__ import annotations

from django.urls import path, re_path

from providers import install_views

app_name = "fizz"
urlpatterns = [
    path("", install_views.install_page, name="install"),
    path("install.sh", install_views.install_script, name="install_script"),
    re_path(r"^(?P<filename>[A-Za-z0-9_.]+-[A-Za-z0-9_.+]+-py3-none-any\.whl)$", install_views.wheel, name="wheel"),
]
