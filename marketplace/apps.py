from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        from marketplace.deployments.penalties import lease_downtime_slash
        from marketplace.deployments.selectors import era_lease_spans
        from marketplace.deployments.services import register_hooks, register_lease_failure_penalty
        from providers.hooks import register_era_leases

        register_hooks()
        # The slashing policy: downtime during a lease its node's failure ended slashes its value.
        register_lease_failure_penalty(lease_downtime_slash)
        # The era rewards' utilization and rental income: the leases each node ran.
        register_era_leases(era_lease_spans)
