from __future__ import annotations

from django.urls import path

from marketplace.deployments import views

app_name = "deployments"

urlpatterns = [
    path("", views.deployment_list, name="list"),
    path("new/", views.deployment_new, name="new"),
    path("new/validate/", views.deployment_validate, name="validate"),
    path("<int:deployment_id>/", views.deployment_detail, name="detail"),
    path("<int:deployment_id>/logs/", views.deployment_logs, name="logs"),
    path("<int:deployment_id>/close/", views.deployment_close_view, name="close"),
    path("<int:deployment_id>/redeploy/", views.deployment_redeploy_view, name="redeploy"),
]
