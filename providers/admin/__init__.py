"""The providers app's admin, one module a subject: `nodes` (regions, GPU models, provider profiles,
nodes, tokens, outages, challenges, node eras, node events), `stake` (stake events, slashes, appeals)
and `rewards` (reward eras, node rewards). Importing them registers their ModelAdmins: Django's
admin autodiscover imports this package."""

from __future__ import annotations

from providers.admin import nodes, rewards, stake  # noqa: F401
