from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    """The market board is cached; each test starts from an empty cache."""
    cache.clear()
    yield
    cache.clear()
