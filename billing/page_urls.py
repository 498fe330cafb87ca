"""Billing pages, under /billing/ (the Stripe webhook lives in billing/urls.py)."""

from __future__ import annotations

from django.urls import path, register_converter

from billing import balance_views, views


class YearMonthConverter:
    """'2026-11' <-> (2026, 11); a month outside 01..12 does not match (a 404)."""

    regex = r"\d{4}-\d{2}"

    def to_python(self, value: str) -> tuple[int, int]:
        year, month = int(value[:4]), int(value[5:])
        if not 1 <= month <= 12:
            raise ValueError("not a month")
        return year, month

    def to_url(self, value: str | tuple[int, int]) -> str:
        if isinstance(value, str):
            return value
        return f"{value[0]:04d}-{value[1]:02d}"


register_converter(YearMonthConverter, "yearmonth")

urlpatterns = [
    path("", views.overview, name="billing"),
    path("topup/", views.topup, name="billing_topup"),
    path("topup/crypto/amount/", views.crypto_amount, name="billing_crypto_amount"),
    path("topup/crypto/check/", views.crypto_check, name="billing_crypto_check"),
    path("topup/crypto/devnet-pay/", views.crypto_devnet_pay, name="billing_crypto_devnet_pay"),
    path("topups/<int:topup_id>/", views.topup_status, name="billing_topup_status"),
    path("transactions/", views.transactions, name="billing_transactions"),
    path("transactions.csv", views.transactions_csv, name="billing_transactions_csv"),
    path("statements/", views.statements, name="billing_statements"),
    path("statements/<yearmonth:period>/", views.statement_detail, name="billing_statement"),
    path("earnings/", views.earnings, name="billing_earnings"),
    path("alerts/", balance_views.alerts, name="billing_alerts"),
    path("auto-reload/", balance_views.autoreload_settings, name="billing_autoreload"),
    path("auto-reload/card/", balance_views.autoreload_card, name="billing_autoreload_card"),
    path("auto-reload/card/done/", balance_views.autoreload_card_done, name="billing_autoreload_card_done"),
    path("auto-reload/card/remove/", balance_views.autoreload_card_delete, name="billing_autoreload_card_remove"),
]
