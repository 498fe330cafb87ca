"""`manage.py seed_demo --nodes 2000 --seed 42`: a realistic demo market, idempotent."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from demo.services import MAX_DEMO_NODES, MAX_SEED, demo_seed


class Command(BaseCommand):
    help = (
        "Fill the database with a deterministic demo market (providers, nodes, demo logins). "
        "Running it again with the same arguments changes nothing; other arguments replace the demo data."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--nodes", type=int, default=2000, help=f"Nodes to create, 0 to {MAX_DEMO_NODES:,} (2000)")
        parser.add_argument("--seed", type=int, default=42, help="Random seed: the same seed, the same market (42)")

    def handle(self, *args, nodes: int, seed: int, **options) -> None:
        if not 0 <= nodes <= MAX_DEMO_NODES:
            raise CommandError(f"--nodes must be between 0 and {MAX_DEMO_NODES:,}; got {nodes}.")
        if not 0 <= seed <= MAX_SEED:
            raise CommandError(f"--seed must be between 0 and {MAX_SEED}; got {seed}.")
        result = demo_seed(nodes=nodes, seed=seed, stdout=self.stdout)
        if result.kept_because:
            self.stdout.write(self.style.WARNING(f"Not replaced: {result.kept_because}"))
        elif result.created:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo market ready: {result.nodes} nodes (seed {result.seed}), "
                    f"{result.datacenter_providers} datacenter providers, "
                    f"{result.community_operators} community operators, in {result.seconds:.1f} s."
                )
            )
        else:
            self.stdout.write(f"Demo data already present: {result.nodes} nodes (seed {result.seed}).")
        self.stdout.write("Demo logins:")
        for login in result.logins:
            self.stdout.write(f"  {login.role:<10} {login.email:<26} password: {login.password}")
