"""The rewards pages and files: the provider's claim page and the published rewards trees (public JSON,
so anyone can rebuild the root RewardDistributor holds). Mounted at the site's root."""

from __future__ import annotations

from django.urls import path

from providers import rewards_views

app_name = "rewards"
urlpatterns = [
    path("provider/rewards/", rewards_views.rewards_page, name="page"),
    path("rewards/tree.json", rewards_views.tree_latest, name="tree_latest"),
    path("rewards/trees/<str:root>.json", rewards_views.tree_by_root, name="tree"),
]
