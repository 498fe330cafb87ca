from __future__ import annotations

from django.urls import path

from marketplace.store import views

app_name = "store"

urlpatterns = [
    path("", views.store_catalog, name="catalog"),
    path("<slug:slug>/", views.store_detail, name="detail"),
]
