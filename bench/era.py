"""Era benchmark: one era close with its rewards, at 10,000 nodes and at --nodes (100,000).

    .venv/bin/python bench/era.py [--nodes 100000] [--small 10000] [--seed 7]
        [--database-url postgres://postgres@127.0.0.1:5432/spheron_era_bench]

For each size, in a database of its own (`<name>_<size>`, dropped and created by this script, and
marked with a comment so that it never drops a database it did not create) migrated from scratch,
it seeds that many agent-run nodes (a provider per 20 nodes; GPU tiers from the reference data;
trust tiers 4–7) and the era's history: outages (a third of the nodes, one to three each, a few
maintenance windows, some reconnects inside the cool-down), four passed liveness challenges per
node and a failed or missed one on 2% of them, leases on a tenth of the nodes (real deployment,
order and lease rows, their meters' fee) and a slash or two. Then it times, with DEBUG off:

- `close`: `providers.uptime.close_eras` closing that one era for every node (trust tiers);
- `rewards`: `providers.era_rewards.era_rewards_run` of the era (receipts, $SPON shares, floor,
  the ledger posting), the first run;
- `rerun`: the same era again (idempotent: it must change nothing).

It prints those figures per size, the era time (close + rewards) and the growth ratio time(N) /
time(small). Budget (issue 22): the era at 100k nodes under 30 s, and the ratio at most 11.
Exit code 1 if a re-run changed anything or the era's $SPON differs from its emission.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARK = "spheron era bench"
ERA_START = datetime(2026, 3, 10, tzinfo=UTC)  # a fixed past era: the figures do not depend on today
BUDGET_SECONDS = 30.0
BUDGET_RATIO = 11.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000, help="nodes of the large run (100000)")
    parser.add_argument("--small", type=int, default=10_000, help="nodes of the small run, for the ratio (10000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ERA_BENCH_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/spheron_era_bench",
    )
    parser.add_argument("--_one", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if urlsplit(args.database_url).scheme not in ("postgres", "postgresql"):
        parser.error("--database-url must be a postgres:// URL")
    if args.nodes < 1 or args.small < 1:
        parser.error("--nodes and --small must be positive")
    return args


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _recreate(url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, dbname="postgres", autocommit=True) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if row is not None and not (row[0] or "").startswith(MARK):
            raise SystemExit(f"the database {name!r} exists and was not made by this script; pass another URL")
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(MARK)))


def _environment(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "spheron_web.settings",
        "DEBUG": "0",
        "SECRET_KEY": "era-bench-" + "x" * 50,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": database_url,
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "PYTHONUNBUFFERED": "1",
    }


def run_size(args: argparse.Namespace, nodes: int) -> dict:
    name = f"{urlsplit(args.database_url).path.lstrip('/')}_{nodes}"
    url = _with_database(args.database_url, name)
    _recreate(args.database_url, name)
    env = _environment(url)
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, capture_output=True
    )
    if done.returncode:
        raise SystemExit(f"migrate failed: {done.stderr.decode()[-2000:]}")
    command = [sys.executable, str(Path(__file__).resolve()), "--_one", str(nodes), "--seed", str(args.seed)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {nodes:,}-node run failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- In the child: seed, then time ------------------------------------------------------------------


def seed(count: int, rng: random.Random) -> None:
    from django.utils import timezone

    from accounts.models import User
    from billing.models import Hold, UsageMeter
    from chain.models import Rate
    from marketplace.models import Deployment, Lease, LeaseStatus, Order
    from providers.models import (
        ChallengeStatus,
        GpuModel,
        Node,
        NodeChallenge,
        NodeMode,
        NodeOutage,
        OutageKind,
        ProviderProfile,
        Slash,
        SlashStatus,
    )

    def at(hours: float) -> datetime:
        return ERA_START + timedelta(hours=hours)

    models = list(GpuModel.objects.filter(kind=GpuModel.Kind.GPU).order_by("slug"))
    cpu_models = list(GpuModel.objects.exclude(kind=GpuModel.Kind.GPU).order_by("slug"))
    providers = count // 20 + 1
    User.objects.bulk_create(
        [User(email=f"p{i}@era-bench.test", is_provider=True) for i in range(providers)]
        + [User(email="renter@era-bench.test", is_developer=True)],
        batch_size=5000,
    )
    users = list(User.objects.filter(email__endswith="@era-bench.test", is_provider=True).order_by("id"))
    renter = User.objects.get(email="renter@era-bench.test")
    ProviderProfile.objects.bulk_create(
        [ProviderProfile(user=user, display_name=f"Bench {user.id}") for user in users], batch_size=5000
    )
    profiles = list(ProviderProfile.objects.order_by("id").values_list("id", flat=True))
    registered = ERA_START - timedelta(days=20)
    rows = []
    for i in range(count):
        model = rng.choice(cpu_models) if i % 10 == 9 and cpu_models else rng.choice(models)
        gpus = 1 if model.kind != GpuModel.Kind.GPU else rng.choice((1, 1, 1, 2, 4, 8))
        rows.append(
            Node(
                provider_id=profiles[i // 20], name=f"n{i}", mode=NodeMode.FIZZ, region_id="us-east",
                gpu_model=model, gpu_count=gpus, vram_gb=model.vram_gb, gpu_tier=model.gpu_tier, cpu_cores=32,
                memory_gb=128, storage_gb=1000, bandwidth_mbps=1000, gpu_price_per_hour_micros=175_000,
                price_per_hour_micros=175_000 * gpus + 50_000, status="online", trust_tier=rng.choice((4, 5, 6, 7)),
                is_simulated=False, registered_at=registered, available_gpus=gpus, available_cpu_cores=32,
                available_memory_gb=128, available_storage_gb=1000, stake_covered=True,
            )
        )  # fmt: skip
    Node.objects.bulk_create(rows, batch_size=5000)
    node_ids = list(Node.objects.order_by("id").values_list("id", flat=True))

    outages, challenges = [], []
    for node_id in node_ids:
        if rng.random() < 1 / 3:
            for _ in range(rng.randint(1, 3)):
                start = rng.uniform(-2, 23)
                kind = OutageKind.MAINTENANCE if rng.random() < 0.1 else OutageKind.OFFLINE
                outages.append(
                    NodeOutage(
                        node_id=node_id, kind=kind, started_at=at(start), ended_at=at(start + rng.uniform(0.05, 3))
                    )
                )
        for k in range(4):
            issued = at(k * 6 + rng.uniform(0, 5))
            challenges.append(
                NodeChallenge(
                    public_id=f"c{node_id}-{k}", node_id=node_id, nonce="n", issued_at=issued,
                    expires_at=issued + timedelta(minutes=2), status=ChallengeStatus.PASSED,
                    answered_at=issued + timedelta(seconds=5),
                )
            )  # fmt: skip
        if rng.random() < 0.02:
            issued = at(rng.uniform(0, 23))
            challenges.append(
                NodeChallenge(
                    public_id=f"f{node_id}", node_id=node_id, nonce="n", issued_at=issued,
                    expires_at=issued + timedelta(minutes=2), status=ChallengeStatus.FAILED,
                    answered_at=issued + timedelta(seconds=5), failure_reason="free VRAM below the claim",
                    expected={"gpu_kind": "gpu", "gpu_count": 1, "gpus_free": 1, "cpu_cores": 32, "memory_gb": 128},
                    measured={"gpus": [], "cpu_cores": 32, "memory_gb": 128},
                )
            )  # fmt: skip
    NodeOutage.objects.bulk_create(outages, batch_size=5000)
    NodeChallenge.objects.bulk_create(challenges, batch_size=5000)

    leased = node_ids[::10]
    holds = Hold.objects.bulk_create(
        [Hold(user=renter, reference_type="bench", reference_id=str(n), amount=10**9) for n in leased],
        batch_size=5000,
    )
    deployments = Deployment.objects.bulk_create(
        [
            Deployment(owner=renter, name=f"d{n}", spec_source="{}", spec={}, spec_hash="0" * 64, mode="fizz",
                       max_price_per_hour_micros=10**6, created_at=at(-1))
            for n in leased
        ],
        batch_size=5000,
    )  # fmt: skip
    orders = Order.objects.bulk_create(
        [Order(deployment=d, created_at=at(-1), deadline_at=at(0)) for d in deployments], batch_size=5000
    )
    meters = UsageMeter.objects.bulk_create(
        [
            UsageMeter(hold=hold, renter=renter, payee=renter, reference_id=str(n), price_per_hour=175_000,
                       fee_rate=Decimal("0.07"), started_at=at(1))
            for hold, n in zip(holds, leased, strict=True)
        ],
        batch_size=5000,
    )  # fmt: skip
    Lease.objects.bulk_create(
        [
            Lease(deployment=d, order=o, node_id=n, price_per_hour_micros=175_000, gpus=1, cpu_cores=4, memory_gb=16,
                  storage_gb=100, status=LeaseStatus.CLOSED, meter=m, started_at=at(rng.uniform(0, 12)),
                  ended_at=at(rng.uniform(13, 30)))
            for d, o, m, n in zip(deployments, orders, meters, leased, strict=True)
        ],
        batch_size=5000,
    )  # fmt: skip
    Slash.objects.bulk_create(
        [
            Slash(provider_id=profiles[0], node_id=node_ids[0], amount=10**18, reason="bench",
                  reason_hash="0x" + "0" * 64, reference="bench:1", status=SlashStatus.OFF_CHAIN, created_at=at(3))
        ]
    )  # fmt: skip
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal("0.05"), at=ERA_START, source="bench")
    del timezone


def child(count: int, seed_value: int) -> None:
    import django

    django.setup()
    from django.db import connection

    from providers import uptime
    from providers.era_rewards import era_rewards_run
    from providers.models import NodeReward

    started = time.perf_counter()
    seed(count, random.Random(seed_value))
    seeded = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    now = ERA_START + timedelta(days=1, minutes=5)

    profile = None
    if os.environ.get("ERA_BENCH_PROFILE"):  # a cProfile of the timed part, for finding the hot spots
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    t0 = time.perf_counter()
    closed = uptime.close_eras(now=now, max_eras=1)
    t1 = time.perf_counter()
    era = era_rewards_run(era_start=ERA_START, now=now)
    t2 = time.perf_counter()
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ["ERA_BENCH_PROFILE"])
    again = era_rewards_run(era_start=ERA_START, now=now)
    t3 = time.perf_counter()
    print(
        json.dumps(
            {
                "nodes": count,
                "seeded_s": round(seeded, 2),
                "eras_closed": closed,
                "close_s": round(t1 - t0, 3),
                "rewards_s": round(t2 - t1, 3),
                "rerun_s": round(t3 - t2, 3),
                "rerun_changed": again.changed,
                "receipts": NodeReward.objects.filter(era=era).count(),
                "spon_ok": int(era.spon) == int(era.emission),
                "floor_paid_usd": era.floor_paid_micros / 1e6,
                "floor_ratio": str(era.floor_ratio),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._one:
        child(args._one, args.seed)
        return 0
    results = []
    for size in (args.small, args.nodes):
        print(f"Seeding and timing {size:,} nodes (a database of its own)…", flush=True)
        results.append(run_size(args, size))
    print()
    print(f"{'nodes':>8} {'close s':>8} {'rewards s':>9} {'era s':>7} {'rerun s':>8} {'changed':>7} {'receipts':>8}")
    for r in results:
        era = r["close_s"] + r["rewards_s"]
        print(
            f"{r['nodes']:>8,} {r['close_s']:>8.2f} {r['rewards_s']:>9.2f} {era:>7.2f} {r['rerun_s']:>8.2f}"
            f" {r['rerun_changed']:>7} {r['receipts']:>8,}"
        )
    small, large = results
    t_small, t_large = small["close_s"] + small["rewards_s"], large["close_s"] + large["rewards_s"]
    ratio = t_large / t_small if t_small else float("inf")
    print(f"floor paid at {large['nodes']:,}: ${large['floor_paid_usd']:,.2f} (ratio {large['floor_ratio']})")
    verdict = "PASS" if t_large < BUDGET_SECONDS and ratio <= BUDGET_RATIO else "MISS"
    print(
        f"era at {large['nodes']:,} nodes: {t_large:.2f} s (budget {BUDGET_SECONDS:.0f} s); "
        f"time({large['nodes']:,}) / time({small['nodes']:,}) = {ratio:.2f} (budget {BUDGET_RATIO:.0f}): {verdict}"
    )
    bad = [r for r in results if r["rerun_changed"] or not r["spon_ok"]]
    if bad:
        print("FAIL: a re-run changed receipts, or the $SPON issued is not the emission", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
