from django.urls import path

from accounts import views, wallet_views

urlpatterns = [
    path("", views.account_settings, name="account_settings"),
    path("api-keys/", views.api_keys, name="account_api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="account_api_key_revoke"),
    path("wallets/", wallet_views.wallets, name="account_wallets"),
]
