"""Deposit watcher benchmark: 10,000 native deposits on one anvil chain, ingested and credited.

    .venv/bin/python bench/watcher.py [--deposits 10000] [--users 1000] [--chain arbitrum]
        [--senders 8] [--finality N] [--database-url postgres://postgres@127.0.0.1:5432/spheron_watcher_bench]
        [--force]

1. The database: `--database-url` is dropped and created afresh (marked with a database comment;
   a database this script did not create is refused unless `--force`), then `manage.py migrate`.
2. The chain: one anvil with the chain's real id (Arbitrum, 42161), the contracts deployed
   (`chain.evm.artifacts.deploy_all`), the registry row written by `registry_sync(devnet=True)`
   (demo rates dated now) and pointed at the node. `--users` users, each with a deposit reference.
3. The deposits: with automine off, `--deposits` `PaymentReceiver.deposit(ref)` calls from
   `--senders` dev accounts are sent in JSON-RPC batches (anvil signs them for the chain id),
   then `evm_mine` packs them into as many blocks as the block gas limit needs (about 1,000 each).
   The chain row's finality is set to those blocks + 2 (`--finality`), so no deposit is final yet.
4. Ingest (timed): `chain.services.chain_watch` (the beat task's service) runs until every
   deposit is stored: events per second.
5. Finality and credit (timed): the bench mines `finality` more blocks one by one, noting when it
   mined each (the moment a block's deposits reach finality is when their finalizing block
   `block + finality - 1` was mined), then runs `chain_watch` until every deposit is credited
   (the watcher re-reads each at finality, marks it final, and billing's hook credits it):
   events per second, and per deposit `credited_at` minus its finality moment (p50, p95).
6. The checks: exactly `--deposits` credited, one ledger transaction each (none twice), the
   ledger sums to zero, every cached balance equals its entries, the users hold exactly the
   deposits' net USD.

Budget (issue 20): ≥ 500 events/s for ingest and for finality + credit. Exit code 0 whatever the
speed; 1 when the setup fails or a correctness check does. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARK = "spheron watcher bench"
EVENTS_PER_SECOND_BUDGET = 500.0
RPC_BATCH = 250  # JSON-RPC calls per HTTP request while sending the deposits
GWEI = 10**9
FINNEY = 10**15  # 0.001 ETH, $3 at the devnet's demo rate (the devnet minimum is $1)
MAX_WATCH_RUNS = 10_000  # a runaway loop ends the run instead of spinning forever


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deposits", type=int, default=10_000, help="deposit events to send (10000)")
    parser.add_argument("--users", type=int, default=1_000, help="users with a deposit reference (1000)")
    parser.add_argument("--chain", default="arbitrum", help="registry key of the EVM chain to play (arbitrum)")
    parser.add_argument("--senders", type=int, default=8, help="dev accounts #2.. that send the deposits (8)")
    parser.add_argument(
        "--finality", type=int, default=None, help="the chain row's finality in blocks (deposit blocks + 2)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("WATCHER_BENCH_DATABASE_URL")
        or "postgres://postgres@127.0.0.1:5432/spheron_watcher_bench",
        help="PostgreSQL database to (re)create (…/spheron_watcher_bench)",
    )
    parser.add_argument("--force", action="store_true", help="drop the database even if this script did not make it")
    args = parser.parse_args(argv)
    if args.deposits < 1 or args.users < 1 or not 1 <= args.senders <= 8:
        parser.error("--deposits and --users must be at least 1; --senders between 1 and 8")
    if args.finality is not None and args.finality < 1:
        parser.error("--finality must be at least 1")
    if urlsplit(args.database_url).scheme not in ("postgres", "postgresql"):
        parser.error("--database-url must be a postgres:// URL")
    return args


def set_environment(args: argparse.Namespace) -> None:
    """Production settings (DEBUG off, so no query log), on the bench's own database."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "spheron_web.settings",
            "DEBUG": "0",
            "SECRET_KEY": "watcher-bench-" + secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "DATABASE_URL": args.database_url,
            "CHAIN_DEVNET": "0",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        }
    )


# --- Setup ---------------------------------------------------------------------------------------


def prepare_database(args: argparse.Namespace) -> None:
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


def rpc_batch(url: str, calls: list[tuple[str, list]]) -> list:
    """One HTTP request with many JSON-RPC calls; the results in order (an error raises)."""
    body = [{"jsonrpc": "2.0", "id": n, "method": method, "params": params} for n, (method, params) in enumerate(calls)]
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answers = sorted(json.load(response), key=lambda answer: answer["id"])
    errors = [answer["error"] for answer in answers if "error" in answer]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(calls)} RPC calls failed, e.g. {errors[0]}")
    return [answer["result"] for answer in answers]


def create_users(count: int) -> list[str]:
    """`count` users with deposit references (bulk: what reference_for would write). Returns the refs."""
    from accounts.models import User
    from chain.models import DepositReference

    users = User.objects.bulk_create(
        [User(email=f"depositor{n}@watcher-bench.test", password="!") for n in range(count)], batch_size=1000
    )
    refs = [DepositReference(user=user, ref="0x" + secrets.token_bytes(32).hex()) for user in users]
    DepositReference.objects.bulk_create(refs, batch_size=1000)
    return [ref.ref for ref in refs]


def send_deposits(node, receiver, refs: list[str], *, deposits: int, senders: int) -> list[int]:
    """Send `deposits` native deposits with automine off, then mine them. Returns the blocks that
    hold them and the wei sent in all."""
    from chain.evm.anvil import DEV_ACCOUNTS

    accounts = [account.address for account in DEV_ACCOUNTS[2 : 2 + senders]]
    nonces = {address: node.w3.eth.get_transaction_count(address) for address in accounts}
    data = {ref: receiver.encode_abi("deposit", [bytes.fromhex(ref[2:])]) for ref in refs}
    gas = node.w3.eth.estimate_gas(
        {"from": accounts[0], "to": receiver.address, "value": FINNEY, "data": data[refs[0]]}
    )
    calls = []
    for n in range(deposits):
        sender = accounts[n % len(accounts)]
        calls.append(
            (
                "eth_sendTransaction",
                [
                    {
                        "from": sender,
                        "to": receiver.address,
                        "value": hex(FINNEY + (n % 7) * FINNEY),
                        "data": data[refs[n % len(refs)]],
                        "gas": hex(gas * 3 // 2),
                        "maxFeePerGas": hex(200 * GWEI),
                        "maxPriorityFeePerGas": hex(GWEI),
                        "nonce": hex(nonces[sender]),
                    }
                ],
            )
        )
        nonces[sender] += 1
    node.rpc("evm_setAutomine", [False])
    for start in range(0, len(calls), RPC_BATCH):
        rpc_batch(node.url, calls[start : start + RPC_BATCH])
    blocks = []
    while int(node.rpc("txpool_status")["pending"], 16):
        node.rpc("evm_mine")
        blocks.append(node.w3.eth.block_number)
        if len(blocks) > deposits:
            raise RuntimeError("the deposits do not get mined")
    return blocks


# --- Figures -------------------------------------------------------------------------------------


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def watch_until(chain_key: str, done) -> tuple[float, int, int]:
    """Run the watcher until `done()`; (seconds, runs, queries)."""
    from django.db import connection

    from chain.services import chain_watch

    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    runs = 0
    with connection.execute_wrapper(count):
        started = time.perf_counter()
        while not done():
            if runs >= MAX_WATCH_RUNS:
                raise RuntimeError(f"not done after {runs} watcher runs")
            chain_watch(chain_key=chain_key)
            runs += 1
        elapsed = time.perf_counter() - started
    return elapsed, runs, queries


def checks(chain_key: str, deposits: int) -> dict[str, object]:
    from django.db.models import Count, F, Sum

    from billing.models import AccountKind, LedgerAccount, LedgerTransaction
    from billing.selectors import cached_balances_mismatch, ledger_total
    from chain.models import Deposit, DepositStatus

    rows = Deposit.objects.filter(chain__key=chain_key)
    txns = LedgerTransaction.objects.filter(idempotency_key__startswith=f"deposit:{chain_key}:")
    net = rows.filter(status=DepositStatus.CREDITED).aggregate(net=Sum(F("usd_micros") - F("fee_micros")))["net"]
    held = LedgerAccount.objects.filter(kind=AccountKind.USER_AVAILABLE).aggregate(held=Sum("balance"))["held"]
    return {
        "deposits stored": rows.count(),
        "credited": rows.filter(status=DepositStatus.CREDITED).count(),
        "other statuses": dict(rows.exclude(status=DepositStatus.CREDITED).values_list("status").annotate(Count("id"))),
        "ledger transactions": txns.count(),
        "deposits credited twice": txns.values("reference_id").annotate(n=Count("id")).filter(n__gt=1).count(),
        "credited without a transaction": rows.filter(status=DepositStatus.CREDITED, credited_txn_id=None).count(),
        "ledger_total": ledger_total(),
        "cached balances off": cached_balances_mismatch().count(),
        "users' net USD": (held or 0, net or 0),
    }


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_environment(args)
    signal.signal(signal.SIGTERM, _interrupt)
    node = None
    try:
        try:
            import django

            django.setup()  # connects to nothing yet: the bench database may not exist
            prepare_database(args)
            from django.conf import settings
            from django.db import connection
            from django.test.utils import override_settings

            from chain.evm import artifacts
            from chain.evm.anvil import DEV_ACCOUNTS
            from chain.models import Chain, Deposit, DepositStatus
            from chain.registry import CHAIN_DEFAULTS, ChainAddresses, registry_sync
            from chain.services import chain_watch

            default = next((d for d in CHAIN_DEFAULTS if d.key == args.chain and d.chain_id), None)
            if default is None:
                raise RuntimeError(f"{args.chain!r} is not an EVM chain of the registry")
            setup_started = time.perf_counter()
            node = _start_node(default.chain_id)
            contracts = artifacts.deploy_all(
                node.w3, deployer_key=DEV_ACCOUNTS[0].private_key, treasury=DEV_ACCOUNTS[1].address
            )
            settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, args.chain: node.url}
            registry_sync(
                devnet=True,
                keys=(args.chain,),
                addresses={
                    args.chain: ChainAddresses(
                        receiver=contracts["PaymentReceiver"],
                        treasury=DEV_ACCOUNTS[1].address,
                        spon_token=contracts["SponToken"],
                        test_usdc=contracts["TestUSDC"],
                    )
                },
            )
            chain_watch(chain_key=args.chain)  # the cursor, at the head before any deposit
            refs = create_users(args.users)
            receiver = artifacts.contract(node.w3, "PaymentReceiver", contracts["PaymentReceiver"])
            sent_started = time.perf_counter()
            blocks = send_deposits(node, receiver, refs, deposits=args.deposits, senders=args.senders)
            sent_in = time.perf_counter() - sent_started
            finality = args.finality or len(blocks) + 2
            Chain.objects.filter(key=args.chain).update(finality=finality, enabled=True)
            chain = Chain.objects.get(key=args.chain)
            if connection.vendor != "postgresql":
                raise RuntimeError("the bench needs PostgreSQL")
            setup_seconds = time.perf_counter() - setup_started
        except Exception as exc:  # noqa: BLE001 - any setup failure ends the run with a message
            print(f"setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1

        print(
            f"{args.deposits:,} deposits from {args.senders} accounts to {args.users:,} references, "
            f"mined in {len(blocks)} blocks ({blocks[0]}–{blocks[-1]}) in {sent_in:.1f} s; "
            f"{chain.name} (chain id {chain.chain_id}), finality {finality} blocks; setup {setup_seconds:.1f} s"
        )
        stored = Deposit.objects.filter(chain=chain)
        with override_settings(DEBUG=False):
            ingest_s, ingest_runs, ingest_queries = watch_until(args.chain, lambda: stored.count() >= args.deposits)
            not_final_yet = stored.exclude(status__in=(DepositStatus.SEEN, DepositStatus.CONFIRMING)).count()

            # Finality: block b's deposits are final once block b + finality - 1 is mined.
            mined_at: dict[int, datetime] = {}
            from django.utils import timezone

            head = blocks[-1]
            for _ in range(finality - 1):
                node.rpc("evm_mine")
                head += 1
                mined_at[head] = timezone.now()
            final_s, final_runs, final_queries = watch_until(
                args.chain,
                lambda: (
                    stored.filter(status=DepositStatus.CREDITED).count() >= args.deposits
                    or not stored.filter(
                        status__in=(DepositStatus.SEEN, DepositStatus.CONFIRMING, DepositStatus.FINAL)
                    ).exists()
                ),
            )
        latencies = [
            (credited_at - mined_at[block + finality - 1]).total_seconds() * 1000
            for block, credited_at in stored.filter(status=DepositStatus.CREDITED).values_list(
                "block_number", "credited_at"
            )
        ]
        found = checks(args.chain, args.deposits)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if node is not None:
            node.stop()

    return report(
        args,
        ingest=(ingest_s, ingest_runs, ingest_queries, not_final_yet),
        final=(final_s, final_runs, final_queries),
        latencies=latencies,
        found=found,
    )


def _start_node(chain_id: int):
    """anvil with automine (deposits are packed by turning it off while sending), and a web3 on it."""
    from web3 import Web3

    from chain.evm.anvil import start_anvil

    class Node:
        def __init__(self, process):
            self.process = process
            self.url = process.url
            self.w3 = Web3(Web3.HTTPProvider(process.url, request_kwargs={"timeout": 120}))

        def rpc(self, method: str, params: list | None = None):
            return self.process.rpc(method, params, timeout=120)

        def stop(self) -> None:
            self.process.stop()

    return Node(start_anvil(chain_id=chain_id))


def report(args, *, ingest, final, latencies, found) -> int:
    ingest_s, ingest_runs, ingest_queries, not_final_yet = ingest
    final_s, final_runs, final_queries = final
    n = args.deposits
    ingest_rate = n / ingest_s if ingest_s else math.inf
    final_rate = found["credited"] / final_s if final_s else math.inf
    print()
    print(
        f"ingest:            {ingest_rate:>8,.0f} events/s  ({n:,} stored in {ingest_s:.2f} s, "
        f"{ingest_runs} watcher runs, {ingest_queries:,} queries; {not_final_yet} decided before finality)  "
        f"budget ≥ {EVENTS_PER_SECOND_BUDGET:.0f}/s: {verdict(ingest_rate >= EVENTS_PER_SECOND_BUDGET)}"
    )
    print(
        f"finality + credit: {final_rate:>8,.0f} events/s  ({found['credited']:,} credited in {final_s:.2f} s, "
        f"{final_runs} watcher runs, {final_queries:,} queries)  "
        f"budget ≥ {EVENTS_PER_SECOND_BUDGET:.0f}/s: {verdict(final_rate >= EVENTS_PER_SECOND_BUDGET)}"
    )
    print(
        f"finality → credit: p50 {percentile(latencies, 0.5) / 1000:.2f} s, "
        f"p95 {percentile(latencies, 0.95) / 1000:.2f} s, max {percentile(latencies, 1.0) / 1000:.2f} s "
        "(from the mining of the finalizing block to credited_at)"
    )
    held, net = found.pop("users' net USD")
    for name, value in found.items():
        print(f"  {name:<32} {value}")
    print(f"  {'users available / deposits net':<32} {held:,} / {net:,} micro-USD")
    ok = (
        found["deposits stored"] == n
        and found["credited"] == n
        and found["ledger transactions"] == n
        and found["deposits credited twice"] == 0
        and found["credited without a transaction"] == 0
        and found["ledger_total"] == 0
        and found["cached balances off"] == 0
        and held == net
    )
    print(f"checks: {verdict(ok)}")
    if not ok:
        print("CORRECTNESS CHECK FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
