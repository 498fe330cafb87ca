from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from spheron_web import views
from spheron_web.api import api

admin.site.site_header = "Spheron Web administration"
admin.site.site_title = "Spheron admin"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon),
    path("admin/login/", views.admin_login, name="admin_login"),  # before the admin's own login
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("account/", include("accounts.urls")),
    path("api/v1/", api.urls),
    path("gpus/", include("marketplace.catalog.urls")),
    path("models/", include("marketplace.store.urls")),
    path("billing/", include("billing.urls")),
    path("billing/", include("billing.page_urls")),
    path("provider/calculator/", include("providers.calculator_urls")),
    path("", include("providers.rewards_urls")),  # /provider/rewards/, /rewards/tree.json
    path("provider/", include("providers.urls")),
    path("fizz/", include("providers.install_urls")),
    path("deployments/", include("marketplace.deployments.urls")),
]
