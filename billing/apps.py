from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing import deposits, hooks, notifications, references
        from chain import hooks as chain_hooks

        hooks.register_low_balance_handler(notifications.send_low_balance_email)
        # Deposits a chain watcher (or a pasted hash) finds final are credited right after.
        chain_hooks.register_deposits_final_handler(deposits.deposits_credit_final)
        references.register_reference_describer(deposits.REFERENCE_TYPE, deposits.describe_deposits)
