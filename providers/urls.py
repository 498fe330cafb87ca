from __future__ import annotations

app_name = "providers"
urlpatterns: list = []
