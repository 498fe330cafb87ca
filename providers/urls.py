"""Provider dashboard pages, under /provider/ (the node agent's API lives in providers/api.py)."""

from __future__ import annotations

from django.urls import path

from providers import views

app_name = "providers"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("onboarding/", views.onboarding, name="onboarding"),
    path("nodes/<int:node_id>/", views.node_detail, name="node"),
    path("nodes/<int:node_id>/maintenance/", views.node_maintenance, name="node_maintenance"),
    path("nodes/<int:node_id>/earnings/", views.earnings, name="node_earnings"),
    path(
        "nodes/<int:node_id>/rewards/<int:era_id>/receipt.json",
        views.node_reward_receipt,
        name="node_reward_receipt",
    ),
    path("earnings/", views.earnings, name="earnings"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("prices/", views.prices, name="prices"),
    path("stake/", views.stake, name="stake"),
    path("stake/faucet/", views.stake_faucet, name="stake_faucet"),
    path("stake/slashes/<int:slash_id>/", views.slash_detail, name="slash"),
    path("stake/slashes/<int:slash_id>/appeal/", views.slash_appeal, name="slash_appeal"),
]
