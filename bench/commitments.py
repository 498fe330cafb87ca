"""Match commitments on chain: time from match to on-chain record under the real beat, and the
batch publishing throughput of LeaseRegistry.recordMany.

    .venv/bin/python bench/commitments.py [--leases 300] [--rate 2] [--block-time 1] [--batches 5]
        [--batch-size 200] [--database-url postgres://postgres@127.0.0.1:5432/spheron_commitments_bench]
        [--redis-url redis://127.0.0.1:6379/6] [--var-dir var/bench-commitments] [--timeout 600] [--force]

1. The app as `make run` configures it: DEBUG=1 (so a devnet: beat publishes commitments every
   5 s and the sender runs every 2 s, unless COMMITMENTS_PUBLISH_SECONDS / CHAIN_SENDER_SECONDS
   say otherwise), CHAIN_RECORDER_KEY = anvil's public account #0, its own SPHERON_VAR_DIR
   (`--var-dir`: the SQLite database, the filesystem broker, the beat schedule, the logs) and its
   own database: SQLite under the var dir (made afresh) unless `--database-url` names a PostgreSQL
   database, which is dropped and created afresh (marked with a comment; one this script did not
   create is refused unless `--force`). Then `manage.py migrate`.
2. The home chain: one anvil with Base's chain id (8453) mining a block every `--block-time`
   seconds (the devnet's chain.devnet.EVM_BLOCK_TIME_SECONDS), the contracts deployed
   (`deploy_all`: account #0 holds RECORDER_ROLE), the "base" row written by
   `registry_sync(devnet=True)` and pointed at it; every other chain row disabled.
3. A market that cannot run out: CPU-heavy nodes (128 cores each, stake covered, online) and
   renters with credits. Nodes never heartbeat here, so the liveness fold (which would mark them
   offline) and the uptime refresh are put at their longest intervals.
4. A real Celery worker (as the Procfile starts it: prefork, two processes) and a real beat.
5. Steady load (timed): `--leases` deployments through `deployment_create` at `--rate` per
   second; the worker matches each (`match_order`, queued on commit), and beat publishes and
   sends. The bench waits until every lease is committed, then prints: leases, batches (their
   sizes), and per lease `committed_at` − the match (`MatchRecord.created_at`): p50, p95, max.
   `committed_at` is when the sender read the batch's receipt (the app knows it is on chain); the
   same figures against the timestamp of the block that holds it are printed too.
6. Batch throughput (timed, worker and beat stopped): `--batches` recordMany batches of
   `--batch-size` commitments (synthetic lease ids) through the same sender: one at a time
   (record, send, mined, receipt read), then all recorded at once and sent in one pass.
   Commitments per second, and the gas of a batch.

The exit code is 0 whatever the figures (a benchmark, not a test) and 1 when the setup fails or
a lease is never committed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARK = "spheron commitments bench"
HOME_CHAIN_ID = 8453  # Base: the home chain (COMMITMENTS_CHAIN_KEY "base")
LEASES_PER_NODE = 100  # each lease takes one core of a 128-core node
LEASES_PER_RENTER = 40  # below MAX_ACTIVE_DEPLOYMENTS (50)
SPEC = """\
version: "2.0"
services:
  app:
    image: python:3.12-slim
    command: ["python", "-c", "print('hi')"]
    resources:
      cpu: {units: 1}
      memory: {size: 1Gi}
      storage: [{size: 1Gi}]
    price: {token: USD, amount: 1.00}
deployment:
  duration: 24h
  mode: fizz
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leases", type=int, default=300, help="deployments matched under the beat (300)")
    parser.add_argument("--rate", type=float, default=2.0, help="deployments created per second (2)")
    parser.add_argument(
        "--block-time", type=float, default=None, help="anvil's block time in seconds (the devnet's: 1)"
    )
    parser.add_argument("--batches", type=int, default=5, help="recordMany batches for the throughput part (5)")
    parser.add_argument("--batch-size", type=int, default=200, help="commitments per batch (200: the publisher's)")
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL database to (re)create; default SQLite under --var-dir"
    )
    parser.add_argument("--redis-url", default=None, help="Redis broker and cache; default the filesystem broker")
    parser.add_argument("--var-dir", default="var/bench-commitments", help="SPHERON_VAR_DIR (var/bench-commitments)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for every lease to commit (600)")
    parser.add_argument("--force", action="store_true", help="drop the database even if this script did not make it")
    args = parser.parse_args(argv)
    if args.leases < 1 or args.rate <= 0 or args.batches < 0 or not 1 <= args.batch_size <= 500:
        parser.error("--leases ≥ 1, --rate > 0, --batches ≥ 0, --batch-size between 1 and 500")
    if args.block_time is not None and args.block_time <= 0:
        parser.error("--block-time must be above 0")
    if args.database_url and urlsplit(args.database_url).scheme not in ("postgres", "postgresql"):
        parser.error("--database-url must be a postgres:// URL")
    if not args.var_dir.startswith("var/"):
        parser.error("--var-dir must be under var/ (it is emptied)")
    return args


def set_environment(args: argparse.Namespace) -> None:
    """What `make run` gives the web, worker and beat processes, with our own var dir and database.
    Inherited by the worker and beat started below."""
    from chain.evm.anvil import DEV_ACCOUNTS

    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "spheron_web.settings",
            "DEBUG": "1",
            "SPHERON_VAR_DIR": args.var_dir,
            "CACHE_KEY_PREFIX": "commitments-bench-" + secrets.token_hex(4),
            "CHAIN_RECORDER_KEY": DEV_ACCOUNTS[0].private_key,  # make run's DEVNET_RECORDER_KEY
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            # The nodes never heartbeat: no fold marks them offline, no uptime refresh moves them.
            "LIVENESS_FOLD_SECONDS": "600",
            "UPTIME_REFRESH_SECONDS": "3600",
        }
    )
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url


# --- Setup ---------------------------------------------------------------------------------------


def prepare_database(args: argparse.Namespace) -> None:
    var = ROOT / args.var_dir
    if var.exists():
        shutil.rmtree(var)  # the SQLite database, the broker's folders, the beat schedule, old logs
    var.mkdir(parents=True)
    if args.database_url:
        import psycopg
        from psycopg import sql

        name = urlsplit(args.database_url).path.lstrip("/")
        if not name or name in ("postgres", "template0", "template1"):
            raise RuntimeError(f"refusing to drop the database {name!r}")
        with psycopg.connect(args.database_url, dbname="postgres", autocommit=True) as admin:
            row = admin.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
            ).fetchone()
            if row is not None and not (row[0] or "").startswith(MARK) and not args.force:
                raise RuntimeError(
                    f"the database {name!r} exists and was not created by this script; "
                    "pass another --database-url, or --force to drop it"
                )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(MARK)))
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py migrate failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def home_chain(args: argparse.Namespace):
    """anvil as the home chain, the contracts, the "base" row; the rest of the registry off."""
    from django.conf import settings
    from web3 import Web3

    from chain.evm import artifacts
    from chain.evm.anvil import DEV_ACCOUNTS, start_anvil
    from chain.models import Chain
    from chain.registry import ChainAddresses, registry_sync

    process = start_anvil(chain_id=HOME_CHAIN_ID, block_time=args.block_time)
    w3 = Web3(Web3.HTTPProvider(process.url, request_kwargs={"timeout": 60}))
    contracts = artifacts.deploy_all(w3, deployer_key=DEV_ACCOUNTS[0].private_key, treasury=DEV_ACCOUNTS[1].address)
    # The worker and beat read these from the environment; this process from its settings.
    os.environ.update(
        {
            "CHAIN_BASE_RPC_URL": process.url,
            "LEASE_REGISTRY_ADDRESS": contracts["LeaseRegistry"],
            "STAKING_CONTRACT_ADDRESS": contracts["SponStaking"],
        }
    )
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "base": process.url}
    settings.LEASE_REGISTRY_ADDRESS = contracts["LeaseRegistry"]
    settings.STAKING_CONTRACT_ADDRESS = contracts["SponStaking"]
    registry_sync(
        devnet=True,
        keys=("base",),
        addresses={
            "base": ChainAddresses(
                receiver=contracts["PaymentReceiver"],
                treasury=DEV_ACCOUNTS[1].address,
                spon_token=contracts["SponToken"],
                test_usdc=contracts["TestUSDC"],
            )
        },
    )
    Chain.objects.filter(key="base").update(rpc_url=process.url, enabled=True)
    Chain.objects.exclude(key="base").update(enabled=False)
    return process, w3, contracts


def build_market(leases: int) -> list:
    """Nodes with room for every lease, renters with credits. Returns the renters."""
    from billing.services import topup_credit
    from tests.factories import make_node, make_provider, make_user

    provider = make_provider(display_name="Bench Provider")
    for _ in range(math.ceil(leases / LEASES_PER_NODE)):
        make_node(
            provider=provider, gpu_model="cpu-hpc", gpu_count=1, cpu_cores=128, memory_gb=1024, storage_gb=10_000,
            gpu_price_per_hour_micros=0, is_simulated=False, uptime_30d=0.999,
        )  # fmt: skip
    renters = []
    for n in range(math.ceil(leases / LEASES_PER_RENTER)):
        user = make_user(email=f"renter{n}@commitments-bench.test", is_developer=True)
        key = f"commitments-bench-{n}"
        topup_credit(user=user, amount=10_000_000_000, reference_type="bench", reference_id=key, idempotency_key=key)
        renters.append(user)
    return renters


class Celery:
    """The worker and beat of the Procfile, as subprocesses with their output in the var dir."""

    def __init__(self, var: Path) -> None:
        self.var = var
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        commands = {
            "worker": [
                "worker", "--loglevel=INFO", "--concurrency=2", "--without-gossip", "--without-mingle",
                "--hostname", f"commitments-bench-{os.getpid()}@%h",
            ],
            "beat": ["beat", "--loglevel=INFO"],
        }  # fmt: skip
        for name, args in commands.items():
            log = (self.var / f"{name}.log").open("ab")
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "spheron_web", *args],
                cwd=ROOT,
                env=os.environ.copy(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while "ready." not in self.log("worker"):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes.values()):
                raise RuntimeError(f"the worker did not start:\n{self.log('worker')[-3000:]}")
            time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.var / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # its own session: the worker's children too
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()


# --- The runs ------------------------------------------------------------------------------------


def steady_load(args: argparse.Namespace, renters: list) -> tuple[float, int]:
    """`--leases` deployments at `--rate`/s; returns (seconds creating them, create errors)."""
    from core.errors import ApplicationError
    from marketplace.deployments.services import deployment_create

    started = time.monotonic()
    errors = 0
    for n in range(args.leases):
        delay = started + n / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            deployment_create(user=renters[n // LEASES_PER_RENTER], source=SPEC)
        except ApplicationError as exc:
            errors += 1
            print(f"deployment {n}: {exc.message}", file=sys.stderr)
    return time.monotonic() - started, errors


def wait_committed(args: argparse.Namespace, created: int) -> bool:
    """Until every order is decided and every lease committed (or the timeout); progress lines."""
    from marketplace.models import Lease, Order, OrderStatus

    deadline = time.monotonic() + args.timeout
    last = ""
    while time.monotonic() < deadline:
        open_orders = Order.objects.filter(status__in=(OrderStatus.OPEN, OrderStatus.MATCHING)).count()
        leases = Lease.objects.count()
        committed = Lease.objects.filter(committed_at__isnull=False).count()
        line = f"  {leases} leases, {committed} committed, {open_orders} orders open"
        if line != last:
            print(line, flush=True)
            last = line
        if leases and committed == leases and open_orders == 0 and leases + failed_orders() >= created:
            return True
        time.sleep(1)
    return False


def failed_orders() -> int:
    from marketplace.models import Order, OrderStatus

    return Order.objects.filter(status=OrderStatus.FAILED).count()


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def spread(samples: list[float]) -> str:
    return (
        f"p50 {percentile(samples, 0.5):.2f} s, p95 {percentile(samples, 0.95):.2f} s, "
        f"max {percentile(samples, 1.0):.2f} s"
    )


def steady_figures(w3) -> dict[str, object]:
    from django.db.models import Count

    from chain.models import ChainTransaction
    from marketplace.models import Lease

    rows = list(
        Lease.objects.filter(committed_at__isnull=False).values_list(
            "committed_at", "commitment_block", "order__match__created_at", "order__created_at"
        )
    )
    block_times: dict[int, datetime] = {}
    for block in {row[1] for row in rows if row[1] is not None}:
        block_times[block] = datetime.fromtimestamp(w3.eth.get_block(block)["timestamp"], tz=UTC)
    sizes = sorted(
        Lease.objects.filter(commitment_tx__isnull=False)
        .values("commitment_tx")
        .annotate(n=Count("id"))
        .values_list("n", flat=True)
    )
    txs = ChainTransaction.objects.filter(purpose="commitments")
    return {
        "leases": len(rows),
        "batches": len(sizes),
        "sizes": sizes,
        "statuses": dict(txs.values_list("status").annotate(Count("id"))),
        "to_app": [(committed - matched).total_seconds() for committed, _b, matched, _o in rows],
        "to_block": [
            (block_times[block] - matched).total_seconds() for _c, block, matched, _o in rows if block in block_times
        ],
        "order_to_match": [(matched - ordered).total_seconds() for _c, _b, matched, ordered in rows],
    }


def batch_throughput(args: argparse.Namespace, w3) -> dict[str, object]:
    """recordMany batches of synthetic leases through the sender, with nothing else running."""
    from chain.models import Chain, ChainTransaction, TxStatus
    from chain.sender import transaction_record, transactions_run
    from marketplace.deployments import commitments
    from marketplace.deployments.commitments import record_many_calldata

    chain = Chain.objects.get(key="base")
    registry = commitments.registry_address()
    next_id = iter(range(10**12, 10**13))

    def record(label: str) -> ChainTransaction:
        pairs = [(next(next_id), secrets.token_hex(32)) for _ in range(args.batch_size)]
        return transaction_record(
            chain=chain,
            purpose="commitments",
            reference=f"commitments:bench-{label}",
            to=registry,
            data=record_many_calldata(pairs),
            sender_key_env=commitments.recorder_key_env(),
        )

    def settle(rows: list[ChainTransaction]) -> None:
        ids = [row.pk for row in rows]
        deadline = time.monotonic() + 120
        while ChainTransaction.objects.filter(id__in=ids).exclude(status=TxStatus.MINED).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("a batch was not mined within 120 s")
            for row in ChainTransaction.objects.filter(id__in=ids, status=TxStatus.SENT):
                w3.eth.wait_for_transaction_receipt(row.tx_hash, timeout=60, poll_latency=0.05)
            transactions_run()

    one_by_one, gas = [], []
    for n in range(args.batches):
        started = time.monotonic()
        tx = record(f"single-{n}")
        transactions_run()
        settle([tx])
        one_by_one.append(time.monotonic() - started)
        tx.refresh_from_db()
        gas.append(tx.gas_used)
    together = None
    if args.batches:
        started = time.monotonic()
        rows = [record(f"together-{n}") for n in range(args.batches)]
        transactions_run()
        settle(rows)
        together = time.monotonic() - started
        blocks = set(
            ChainTransaction.objects.filter(id__in=[r.pk for r in rows]).values_list("receipt_block", flat=True)
        )
    return {
        "one_by_one": one_by_one,
        "gas": gas,
        "together": together,
        "together_blocks": len(blocks) if args.batches else 0,
        "block_gas_limit": w3.eth.get_block("latest")["gasLimit"],
    }


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_environment(args)
    signal.signal(signal.SIGTERM, _interrupt)
    anvil = None
    celery = Celery(ROOT / args.var_dir)
    try:
        try:
            import django

            django.setup()  # connects to nothing yet: the bench database may not exist
            prepare_database(args)
            from django.conf import settings

            from chain.devnet import EVM_BLOCK_TIME_SECONDS

            if args.block_time is None:
                args.block_time = EVM_BLOCK_TIME_SECONDS

            setup_started = time.monotonic()
            anvil, w3, contracts = home_chain(args)
            renters = build_market(args.leases)
            celery.start()
            setup_seconds = time.monotonic() - setup_started
        except Exception as exc:  # noqa: BLE001 - any setup failure ends the run with a message
            print(f"setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1

        from django.db import connection

        publish_every = settings.CELERY_BEAT_SCHEDULE["publish-commitments"]["schedule"]
        send_every = settings.CELERY_BEAT_SCHEDULE["send-transactions"]["schedule"]
        print(
            f"{connection.vendor}, anvil chain id {HOME_CHAIN_ID} with a block every {args.block_time:g} s, "
            f"LeaseRegistry {contracts['LeaseRegistry']}; beat: publish-commitments every {publish_every} s "
            f"(≤ 200 leases a run), send-transactions every {send_every} s; setup {setup_seconds:.1f} s"
        )
        print(f"steady load: {args.leases} deployments at {args.rate:g}/s …", flush=True)
        create_seconds, create_errors = steady_load(args, renters)
        print(f"  created in {create_seconds:.1f} s ({create_errors} refused); waiting for the commitments …")
        all_committed = wait_committed(args, args.leases - create_errors)
        celery.stop()
        steady = steady_figures(w3)
        failed = failed_orders()
        print("batch throughput: worker and beat stopped …", flush=True)
        throughput = batch_throughput(args, w3)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        celery.stop()
        if anvil is not None:
            anvil.stop()

    report(args, steady, throughput, failed=failed, publish_every=publish_every, send_every=send_every)
    if not all_committed:
        print(f"FAIL: not every lease was committed within {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


def report(args, steady, throughput, *, failed: int, publish_every: int, send_every: int) -> None:
    sizes = steady["sizes"]
    print()
    print(
        f"leases committed:   {steady['leases']} of {args.leases} deployments ({failed} orders failed to match) "
        f"in {steady['batches']} batches (sizes {sizes[0] if sizes else 0}–{sizes[-1] if sizes else 0}, "
        f"median {percentile(sizes, 0.5) if sizes else 0:g}); commitment transactions by status {steady['statuses']}"
    )
    print(f"order → match:      {spread(steady['order_to_match'])} (the worker's matching, for reference)")
    print(f"match → committed:  {spread(steady['to_app'])} (committed_at: the sender read the receipt)")
    print(f"match → block:      {spread(steady['to_block'])} (the timestamp of the block holding it; whole seconds)")
    print(
        f"beat's ceiling:     {2000 / publish_every:.0f} commitments/s "
        f"(≤ 10 batches of ≤ 200 per publish-commitments run, every {publish_every} s; sender every {send_every} s)"
    )
    single = throughput["one_by_one"]
    if single:
        gas = throughput["gas"]
        per = args.batch_size / percentile(single, 0.5)
        print(
            f"one batch at a time: {per:,.0f} commitments/s ({args.batch_size} per recordMany; record → sent → mined "
            f"→ receipt read: {spread(single)} over {len(single)} batches)"
        )
        together = throughput["together"]
        print(
            f"{args.batches} batches at once: {args.batches * args.batch_size / together:,.0f} commitments/s "
            f"({args.batches * args.batch_size} in {together:.2f} s, {throughput['together_blocks']} block(s))"
        )
        mean_gas = sum(gas) / len(gas)
        print(
            f"gas per batch:      {mean_gas:,.0f} ({mean_gas / args.batch_size:,.0f} per commitment); "
            f"block gas limit {throughput['block_gas_limit']:,}: "
            f"≈ {throughput['block_gas_limit'] / (mean_gas / args.batch_size):,.0f} commitments per block"
        )


if __name__ == "__main__":
    sys.exit(main())
