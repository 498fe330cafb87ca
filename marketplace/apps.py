from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        from marketplace.deployments.penalties import lease_downtime_slash
        from marketplace.deployments.services import register_hooks, register_lease_failure_penalty

        register_hooks()
        # The slashing policy: downtime during a lease its node's failure ended slashes its value.
        register_lease_failure_penalty(lease_downtime_slash)
