"""Ledger benchmark: one hourly settlement run over 10,000 active usage meters.

    DEBUG=1 .venv/bin/python bench/ledger.py [--meters 10000] [--payees 300] [--seed 42] [--batch-size 1000]

Creates (or reuses) the bench population in the configured database: renters with topped-up
credits, a few hundred provider payees, and one open usage meter per rental with its hold, all
written in bulk as correctly balanced ledger rows (the same rows `topup_credit`, `hold_place` and
`meter_open` write, with the same idempotency keys). Then it runs ONE `usage_settle_all` for the
next hour and prints the wall time, the meters settled, the rows written and the queries sent,
and checks that the ledger still sums to zero with every cached balance equal to its entries.

Bench data is recognised by its users' e-mail domain (`@ledger-bench.test`) and its meters'
reference type (`bench_lease`); nothing else in the database is touched. A later run reuses the
population and settles the hour after the last one (holds cover 24 hours); `--fresh` deletes the
bench rows and builds them again. Exit code 0 unless the setup fails or the ledger check fails.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spheron_web.settings")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")  # warnings stay in memory

BENCH_DOMAIN = "ledger-bench.test"
REFERENCE_TYPE = "bench_lease"
CLEARING_KEY = "ledger-bench"  # the bench's top-ups come from their own Stripe clearing sub-account
BUDGET_SECONDS = 10.0
METERS_PER_RENTER = 4
HOLD_HOURS = 24
SPARE_CREDITS = 50_000_000  # $50 per renter on top of the holds, for hold extensions
BATCH = 5000
# Hourly prices in micro-USD: a 3090 to an 8x H100 box.
PRICES = [150_000, 175_000, 390_000, 750_000, 1_250_000, 2_100_000, 4_200_000, 16_800_000]
START = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=10_000, help="active usage meters (10000)")
    parser.add_argument("--payees", type=int, default=300, help="provider payees (300)")
    parser.add_argument("--seed", type=int, default=42, help="random seed for prices and payees (42)")
    parser.add_argument("--batch-size", type=int, default=1000, help="usage_settle_all batch size (1000)")
    parser.add_argument(
        "--short-every",
        type=int,
        default=100,
        help="every Nth meter's hold covers only the hour being settled, so its hold is extended (100; 0: none)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete the bench rows and create them again")
    args = parser.parse_args(argv)
    if args.meters < 1 or args.payees < 1 or args.batch_size < 1 or args.short_every < 0:
        parser.error("--meters, --payees and --batch-size must be at least 1, --short-every at least 0")
    return args


def delete_bench_data() -> None:
    from django.db import transaction

    from accounts.models import User
    from billing.models import AccountKind, Hold, LedgerAccount, LedgerEntry, LedgerTransaction, UsageMeter

    with transaction.atomic():
        users = User.objects.filter(email__endswith=f"@{BENCH_DOMAIN}")
        accounts = LedgerAccount.objects.filter(user__in=users) | LedgerAccount.objects.filter(
            kind=AccountKind.CLEARING_STRIPE, user=None, key=CLEARING_KEY
        )
        txn_ids = set(LedgerEntry.objects.filter(account__in=accounts).values_list("transaction_id", flat=True))
        # Bench transactions touch bench accounts and the platform's fee account only: take the fees back.
        fees = LedgerAccount.objects.filter(kind=AccountKind.PLATFORM_FEES, user=None).first()
        if fees is not None:
            taken = LedgerEntry.objects.filter(transaction_id__in=txn_ids, account=fees)
            total = sum(taken.values_list("amount", flat=True))
            taken.delete()
            LedgerAccount.objects.filter(id=fees.id).update(balance=fees.balance - total)
        LedgerEntry.objects.filter(transaction_id__in=txn_ids).delete()
        LedgerTransaction.objects.filter(id__in=txn_ids).delete()
        UsageMeter.objects.filter(renter__in=users).delete()
        Hold.objects.filter(user__in=users).delete()
        accounts.delete()
        users.delete()


def create_bench_data(args: argparse.Namespace) -> None:
    """The rows topup_credit, hold_place and meter_open would write, in bulk and balanced."""
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from accounts.models import User
    from billing.models import (
        AccountKind,
        Hold,
        LedgerAccount,
        LedgerEntry,
        LedgerTransaction,
        TransactionKind,
        UsageMeter,
    )
    from billing.usage import fee_rate_for

    rng = random.Random(args.seed)
    renter_count = -(-args.meters // METERS_PER_RENTER)
    password = make_password(None)
    with transaction.atomic():
        renters = User.objects.bulk_create(
            [User(email=f"renter{n}@{BENCH_DOMAIN}", password=password) for n in range(renter_count)],
            batch_size=BATCH,
        )
        payees = User.objects.bulk_create(
            [
                User(email=f"provider{n}@{BENCH_DOMAIN}", password=password, is_provider=True, is_developer=False)
                for n in range(args.payees)
            ],
            batch_size=BATCH,
        )
        # Each meter: (renter, payee, price, fee rate, hold amount).
        plans = []
        for n in range(args.meters):
            price = rng.choice(PRICES)
            hours = 1 if args.short_every and n % args.short_every == 0 else HOLD_HOURS
            plans.append(
                (
                    renters[n // METERS_PER_RENTER],
                    rng.choice(payees),
                    price,
                    fee_rate_for(rng.choice(["fizz", "provider"])),
                    price * hours,
                )
            )
        held: dict[int, int] = {}
        for renter, _payee, _price, _rate, amount in plans:
            held[renter.id] = held.get(renter.id, 0) + amount
        topped_up = {renter.id: held[renter.id] + SPARE_CREDITS for renter in renters}

        clearing, _ = LedgerAccount.objects.get_or_create(kind=AccountKind.CLEARING_STRIPE, user=None, key=CLEARING_KEY)
        LedgerAccount.objects.filter(id=clearing.id).update(balance=clearing.balance - sum(topped_up.values()))
        available = {
            a.user_id: a
            for a in LedgerAccount.objects.bulk_create(
                [
                    LedgerAccount(kind=AccountKind.USER_AVAILABLE, user=r, balance=topped_up[r.id] - held[r.id])
                    for r in renters
                ],
                batch_size=BATCH,
            )
        }
        reserved = {
            a.user_id: a
            for a in LedgerAccount.objects.bulk_create(
                [LedgerAccount(kind=AccountKind.USER_RESERVED, user=r, balance=held[r.id]) for r in renters],
                batch_size=BATCH,
            )
        }
        LedgerAccount.objects.bulk_create(
            [LedgerAccount(kind=AccountKind.USER_DEBT, user=r) for r in renters]
            + [LedgerAccount(kind=AccountKind.PROVIDER_PENDING, user=p) for p in payees],
            batch_size=BATCH,
        )

        topups = LedgerTransaction.objects.bulk_create(
            [
                LedgerTransaction(
                    kind=TransactionKind.TOPUP,
                    reference_type="stripe_event",
                    reference_id=f"bench:{r.id}",
                    idempotency_key=f"bench:topup:{r.id}",
                    memo="Top-up",
                )
                for r in renters
            ],
            batch_size=BATCH,
        )
        entries = []
        for renter, txn in zip(renters, topups, strict=True):
            entries.append(LedgerEntry(transaction=txn, account=clearing, amount=-topped_up[renter.id]))
            entries.append(LedgerEntry(transaction=txn, account=available[renter.id], amount=topped_up[renter.id]))

        holds = Hold.objects.bulk_create(
            [
                Hold(user=renter, reference_type=REFERENCE_TYPE, reference_id=str(n), amount=amount)
                for n, (renter, _payee, _price, _rate, amount) in enumerate(plans)
            ],
            batch_size=BATCH,
        )
        placements = LedgerTransaction.objects.bulk_create(
            [
                LedgerTransaction(
                    kind=TransactionKind.HOLD_PLACE,
                    reference_type="hold",
                    reference_id=str(hold.id),
                    idempotency_key=f"hold:{hold.id}:place",
                )
                for hold in holds
            ],
            batch_size=BATCH,
        )
        for hold, txn in zip(holds, placements, strict=True):
            entries.append(LedgerEntry(transaction=txn, account=available[hold.user_id], amount=-hold.amount))
            entries.append(LedgerEntry(transaction=txn, account=reserved[hold.user_id], amount=hold.amount))
        LedgerEntry.objects.bulk_create(entries, batch_size=BATCH)

        UsageMeter.objects.bulk_create(
            [
                UsageMeter(
                    hold=hold,
                    renter=renter,
                    payee=payee,
                    reference_type=REFERENCE_TYPE,
                    reference_id=str(n),
                    price_per_hour=price,
                    fee_rate=rate,
                    started_at=START,
                )
                for n, (hold, (renter, payee, price, rate, _amount)) in enumerate(zip(holds, plans, strict=True))
            ],
            batch_size=BATCH,
        )


def bench_population(args: argparse.Namespace) -> tuple[int, datetime]:
    """(open bench meters, the moment to settle): reused when it matches, else (re)created."""
    from django.db.models import Max

    from billing.models import UsageMeter

    meters = UsageMeter.objects.filter(reference_type=REFERENCE_TYPE)
    open_count = meters.filter(closed_at__isnull=True).count()
    last = meters.aggregate(last=Max("settled_at"))["last"]
    reusable = (
        not args.fresh
        and open_count == args.meters == meters.count()
        and (last is None or last + timedelta(hours=1) <= START + timedelta(hours=HOLD_HOURS))
    )
    if reusable:
        print(f"Reusing {open_count:,} open bench meters.")
    else:
        if meters.exists() or args.fresh:
            print("Deleting the previous bench rows.")
            delete_bench_data()
        started = time.perf_counter()
        create_bench_data(args)
        print(
            f"Created {args.meters:,} meters for {-(-args.meters // METERS_PER_RENTER):,} renters and "
            f"{args.payees:,} payees in {time.perf_counter() - started:.1f} s."
        )
        last = None
    return args.meters, (last or START) + timedelta(hours=1)


def table_rows() -> dict[str, int]:
    from billing.models import Hold, LedgerAccount, LedgerEntry, LedgerTransaction, UsageMeter

    return {
        "ledger transactions": LedgerTransaction.objects.count(),
        "ledger entries": LedgerEntry.objects.count(),
        "ledger accounts": LedgerAccount.objects.count(),
        "holds": Hold.objects.count(),
        "usage meters": UsageMeter.objects.count(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import django

        django.setup()
        from django.db import connection
        from django.test.utils import override_settings

        from billing.selectors import cached_balances_mismatch, ledger_total
        from billing.usage import open_meters, usage_settle_all

        meters, now = bench_population(args)
    except Exception as exc:  # noqa: BLE001 - any setup failure ends the run with a message
        print(f"setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "ANALYZE billing_usagemeter, billing_hold, billing_ledgeraccount, "
                "billing_ledgertransaction, billing_ledgerentry"
            )
    open_before = open_meters().count()
    before = table_rows()
    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    # Production-like: DEBUG off, so Django's query log costs nothing; the wrapper only counts.
    with override_settings(DEBUG=False), connection.execute_wrapper(count):
        started = time.perf_counter()
        result = usage_settle_all(now=now, batch_size=args.batch_size)
        elapsed = time.perf_counter() - started
    after = table_rows()

    total = ledger_total()
    mismatched = cached_balances_mismatch().count()
    print()
    print(
        f"database: {connection.vendor} ({connection.settings_dict['NAME']}); open meters: {open_before:,} "
        f"(bench: {meters:,}); settling until {now:%Y-%m-%d %H:%M} UTC; batch size {args.batch_size}"
    )
    print(
        f"usage_settle_all: {elapsed:.2f} s wall   budget {BUDGET_SECONDS:.0f} s on PostgreSQL: "
        f"{'PASS' if elapsed < BUDGET_SECONDS else 'FAIL'}"
    )
    print(f"  meters settled        {result.meters:>10,}")
    print(f"  charged               {result.charged:>10,} micro-USD (${result.charged / 1e6:,.2f})")
    print(f"  transactions          {result.transactions:>10,}")
    print(f"  entries               {result.entries:>10,}")
    print(f"  holds short of an hour{len(result.short):>10,} (extended from available credits, or warned)")
    print(f"  rows_written          {result.rows_written:>10,} (SettleResult: inserts + updated rows)")
    print(f"  queries               {queries:>10,}")
    print("  rows per table (before -> after, +inserted):")
    for name in before:
        print(f"    {name:<20} {before[name]:>10,} -> {after[name]:>10,}  (+{after[name] - before[name]:,})")
    print(f"ledger_total() = {total}; accounts whose cached balance differs from their entries: {mismatched}")
    if total != 0 or mismatched:
        print("LEDGER CHECK FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
