"""manage.py chains_sync: write the registry's default chains and tokens (chain/registry.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chain.registry import registry_sync


class Command(BaseCommand):
    help = "Write the default chains and tokens; existing rows keep their admin edits unless --overwrite."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--overwrite", action="store_true", help="Reset existing rows to the defaults.")
        devnet = parser.add_mutually_exclusive_group()
        devnet.add_argument("--devnet", dest="devnet", action="store_true", default=None, help="Devnet values.")
        devnet.add_argument("--production", dest="devnet", action="store_false", help="Production values.")

    def handle(self, *args, overwrite: bool, devnet: bool | None, **options) -> None:
        result = registry_sync(overwrite=overwrite, devnet=devnet)
        self.stdout.write(
            f"chains created: {', '.join(result.created) or '-'}; updated: {', '.join(result.updated) or '-'}; "
            f"tokens created: {', '.join(result.tokens_created) or '-'}; "
            f"devnet rates dated now: {', '.join(result.rates_seeded) or '-'}"
        )
