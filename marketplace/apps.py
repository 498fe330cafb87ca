from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        from marketplace.deployments.penalties import lease_failure_slash
        from marketplace.deployments.services import register_hooks, register_lease_failure_penalty

        register_hooks()
        # The interim slash for a lease its node's failure ended (the rewards issue replaces it).
        register_lease_failure_penalty(lease_failure_slash)
