from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing import hooks, notifications

        hooks.register_low_balance_handler(notifications.send_low_balance_email)
