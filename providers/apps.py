from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers and nodes"

    def ready(self) -> None:
        from providers.hooks import register_challenge_failure_handler
        from providers.models import Region
        from providers.selectors import region_codes_forget
        from providers.slashing import liveness_failure_slash

        post_save.connect(region_codes_forget, sender=Region, dispatch_uid="region_codes_forget_save")
        post_delete.connect(region_codes_forget, sender=Region, dispatch_uid="region_codes_forget_delete")
        # The slashing policy: repeated failed liveness challenges in an era slash stake.
        register_challenge_failure_handler(liveness_failure_slash)
