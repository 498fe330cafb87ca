from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo market (`manage.py seed_demo`): above every app, since it writes accounts, providers,
    billing and marketplace rows. It has no models of its own: what was seeded is recorded in
    marketplace's `DemoMarket`."""

    name = "demo"
    verbose_name = "Demo market"
