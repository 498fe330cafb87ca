"""/provider/calculator/: the earnings calculator (public: a machine's earnings before signing up)."""

from __future__ import annotations

from django.urls import path

from providers import calculator

app_name = "provider_calculator"
urlpatterns = [
    path("", calculator.calculator, name="calculator"),
]
