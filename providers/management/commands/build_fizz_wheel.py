"""Build (or find in the cache) the fizz agent's wheel that /fizz/install.sh installs."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from providers.fizz_dist import fizz_wheel


class Command(BaseCommand):
    help = "Build the fizz agent's wheel from sdk/ into VAR_DIR/fizz-dist (a no-op when the SDK is unchanged)."

    def handle(self, *args, **options) -> None:
        wheel = fizz_wheel()
        self.stdout.write(f"{wheel.path} (sha256 {wheel.sha256})")
