"""Heartbeat benchmark: N node agents heartbeating against gunicorn on PostgreSQL + Redis.

    .venv/bin/python bench/heartbeats.py [--nodes 13000] [--seconds 30] [--rate 0] [--concurrency 64]
        [--workers 2] [--worker-class gthread] [--threads 4] [--client raw]
        [--database-url postgres://postgres@127.0.0.1:5432/spheron_bench_hb] [--redis-url redis://127.0.0.1:6379/3]

Drops and re-creates the benchmark database (only one this script created, or an empty one),
migrates it, creates one staked provider with N registered, online agent nodes in bulk (the secrets
stay in memory), fills the node credentials cache, starts gunicorn, then sends heartbeats
round-robin over the nodes for --seconds, as fast as possible or at --rate per second, answering
the liveness challenges the replies carry as the agent does. It prints throughput, latency, the CPU
each process used, the database writes and commits per second during the load (pg_stat_database),
and the cost of `fold_heartbeats()` (the 15-second beat task). See bench/README.md. Exits 0
whatever the figures, 1 when the setup fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
RATE_BUDGET = 1000.0  # heartbeats per second
P95_BUDGET_MS = 25.0
CACHE_PREFIX = "spheron-hb-bench"  # CACHE_KEY_PREFIX for the server and this script: its keys only
BENCH_EMAIL = "provider@heartbeat-bench.test"  # marks a database this script created
AGENT_VERSION = "0.1.0"
# (GPU model slug, GPUs, name as nvidia-smi prints it, MiB per GPU, CPU threads, RAM GB, disk GB)
MACHINES = [
    ("rtx4090", 1, "NVIDIA GeForce RTX 4090", 24564, 16, 64, 500),
    ("rtx3090", 2, "NVIDIA GeForce RTX 3090", 24576, 24, 128, 1000),
    ("rtx4090", 4, "NVIDIA GeForce RTX 4090", 24564, 32, 256, 2000),
    ("a100-80g", 4, "NVIDIA A100-SXM4-80GB", 81920, 64, 512, 4000),
    ("h100", 8, "NVIDIA H100 80GB HBM3", 81559, 128, 2048, 15000),
]
BATCH = 2000


# --- Arguments and environment -----------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=13_000, help="simulated agent nodes (13000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the timed load (30)")
    parser.add_argument("--rate", type=float, default=0.0, help="target heartbeats/s; 0: as fast as possible (0)")
    parser.add_argument("--concurrency", type=int, default=64, help="client connections in flight (64)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/spheron_bench_hb",
        help="PostgreSQL database to (re)create (env DATABASE_URL, else .../spheron_bench_hb)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/3",
        help="Redis for the cache (env REDIS_URL, else redis://127.0.0.1:6379/3)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument(
        "--worker-class", choices=["gthread", "sync"], default="gthread", help="gunicorn worker class (gthread)"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads per gthread worker (2, as gunicorn.conf.py)")
    parser.add_argument("--port", type=int, default=8765, help="gunicorn port on 127.0.0.1 (8765)")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: asyncio streams with pre-built requests, or httpx.AsyncClient (raw)",
    )
    parser.add_argument("--force", action="store_true", help="drop the database even if this script did not create it")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.seconds <= 0 or args.rate < 0 or args.concurrency < 1:
        parser.error("--nodes and --concurrency must be at least 1, --seconds above 0, --rate at least 0")
    if args.workers < 1 or args.threads < 1:
        parser.error("--workers and --threads must be at least 1")
    if urlsplit(args.database_url).scheme not in ("postgres", "postgresql"):
        parser.error("--database-url must be a postgres:// URL")
    return args


def set_environment(args: argparse.Namespace) -> None:
    """Production settings (DEBUG off) that serve plain http on 127.0.0.1: for this process and gunicorn."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "spheron_web.settings",
            "DEBUG": "0",
            # settings.py refuses a key under 50 characters when DEBUG is off.
            "SECRET_KEY": "heartbeat-bench-" + secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",  # on by default without DEBUG: every http request would get a 301
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "CACHE_KEY_PREFIX": CACHE_PREFIX,
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "PYTHONUNBUFFERED": "1",
        }
    )


# --- Database ----------------------------------------------------------------------------------


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def database_reset(url: str, *, force: bool) -> None:
    """DROP + CREATE the bench database; refuses one that holds something else, unless forced."""
    import psycopg
    from psycopg import sql

    name = database_name(url)
    if not name or name == "postgres":
        raise RuntimeError(f"refusing to drop the database {name!r}")
    with psycopg.connect(url, dbname="postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not force:
            with psycopg.connect(url, autocommit=True) as conn:
                tables = conn.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                ).fetchone()[0]
                ours = tables == 0
                if tables and conn.execute("SELECT to_regclass('accounts_user')").fetchone()[0]:
                    ours = bool(conn.execute("SELECT 1 FROM accounts_user WHERE email = %s", [BENCH_EMAIL]).fetchone())
            if not ours:
                raise RuntimeError(
                    f"the database {name!r} exists and was not created by this script (no {BENCH_EMAIL}); "
                    "pass another --database-url, or --force to drop it"
                )
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def migrate() -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py migrate failed:\n{done.stdout}{done.stderr}")


@dataclass
class DbCounters:
    writes: int  # tup_inserted + tup_updated + tup_deleted
    commits: int
    tables: dict[str, tuple[int, int, int]]  # table: (inserted, updated, deleted)


class DbStats:
    """pg_stat_database and pg_stat_user_tables of the bench database, read on a connection of its own.

    Backends send their counters to the statistics system when a transaction ends (at most once a
    second) or when they exit, so `read` first waits for every other connection to the database
    to be gone: the readings are taken with gunicorn stopped and Django's connection closed."""

    def __init__(self, url: str):
        import psycopg

        self.name = database_name(url)
        self.conn = psycopg.connect(url, autocommit=True)

    def _others(self) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'",
            [self.name],
        ).fetchone()[0]

    def read(self, timeout: float = 15.0) -> DbCounters:
        deadline = time.monotonic() + timeout
        while self._others() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        writes, commits = self.conn.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted, xact_commit FROM pg_stat_database WHERE datname = %s",
            [self.name],
        ).fetchone()
        tables = {
            name: (ins, upd, dele)
            for name, ins, upd, dele in self.conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
            ).fetchall()
        }
        return DbCounters(writes, commits, tables)

    def challenges(self) -> dict[str, int]:
        """Liveness challenges by status (passed, failed, pending, missed)."""
        return dict(
            self.conn.execute("SELECT status, count(*) FROM providers_nodechallenge GROUP BY status ORDER BY 1")
        )

    def close(self) -> None:
        self.conn.close()


def table_changes(before: DbCounters, after: DbCounters) -> str:
    parts = []
    for name, (ins, upd, dele) in sorted(after.tables.items()):
        b = before.tables.get(name, (0, 0, 0))
        delta = (ins - b[0], upd - b[1], dele - b[2])
        if any(delta):
            words = zip(delta, ("inserted", "updated", "deleted"), strict=True)
            parts.append(f"{name}: " + ", ".join(f"{n:,} {what}" for n, what in words if n))
    return "; ".join(parts) or "none"


# --- Population --------------------------------------------------------------------------------


@dataclass
class Agent:
    """What a simulated agent knows: its id, secret and machine, and what it owes the server."""

    node_id: int
    secret: str
    machine: tuple
    sequence: int = 0
    answers: list[dict] = field(default_factory=list)  # challenge responses for the next heartbeat
    last_ok: float = 0.0  # time.monotonic() of its last heartbeat answered with 200


def create_population(count: int) -> list[Agent]:
    """One provider, staked for every GPU, and `count` registered online agent nodes, in bulk."""
    from django.conf import settings
    from django.db import connection, transaction

    from accounts.models import User
    from core import clock
    from providers import liveness
    from providers.hardware import gpu_model_slug
    from providers.models import GpuModel, Node, NodeMode, NodeStatus, StakeEventKind
    from providers.pricing import (
        FIZZ_CPU_PER_CORE_MONTH,
        FIZZ_MEMORY_PER_GB_MONTH,
        FIZZ_STORAGE_PER_GB_MONTH,
        fizz_gpu_price_per_hour_micros,
        node_price_per_hour_micros,
    )
    from providers.services import provider_onboard, stake_coverage_refresh, stake_record

    for slug, _gpus, name, mib, *_ in MACHINES:
        if gpu_model_slug(name, mib) != slug:
            raise RuntimeError(f"{name!r} is not recognised as {slug}")
    models = GpuModel.objects.in_bulk([m[0] for m in MACHINES])
    now = clock.now()
    # Seen a minute ago: every node is due for a last_seen_at write at the first fold.
    seen = now - timedelta(seconds=60)
    with transaction.atomic():
        user = User.objects.create_user(email=BENCH_EMAIL, password=None, is_provider=True)
        provider = provider_onboard(
            user=user,
            display_name="Heartbeat bench",
            payout_evm_address="0x" + "5a" * 20,
            default_region="us-east",
        )
        machines = [MACHINES[n % len(MACHINES)] for n in range(count)]
        gpus = sum(m[1] for m in machines)
        stake_record(
            provider=provider,
            kind=StakeEventKind.STAKE,
            amount=str(gpus * settings.MIN_STAKE_PER_GPU_SPON),
            reason="heartbeat bench",
        )
        nodes = []
        for n, (slug, gpu_count, _name, mib, cores, memory, storage) in enumerate(machines):
            model = models[slug]
            gpu_price = fizz_gpu_price_per_hour_micros(model.multiplier)
            machine_id = f"{n:064x}"
            hardware = {
                "cpu_model": "AMD EPYC 7543 32-Core Processor",
                "cpu_cores": cores,
                "memory_gb": memory,
                "storage_gb": storage,
                "bandwidth_mbps": 1000,
                "gpus": [
                    {"index": i, "name": _name, "uuid": f"GPU-{n:08x}-{i}", "memory_total_mib": mib}
                    for i in range(gpu_count)
                ],
                "driver_version": "550.54.15",
                "cuda_version": "12.4",
                "apple_chip": None,
            }
            nodes.append(
                Node(
                    provider=provider,
                    name=f"hb-{n:06d}",
                    mode=NodeMode.FIZZ,
                    region_id="us-east",
                    gpu_model=model,
                    gpu_count=gpu_count,
                    vram_gb=max(1, round(mib / 1024)),
                    gpu_tier=model.gpu_tier,
                    cpu_cores=cores,
                    memory_gb=memory,
                    storage_gb=storage,
                    bandwidth_mbps=1000,
                    gpu_price_per_hour_micros=gpu_price,
                    cpu_price_per_core_month_micros=FIZZ_CPU_PER_CORE_MONTH,
                    memory_price_per_gb_month_micros=FIZZ_MEMORY_PER_GB_MONTH,
                    storage_price_per_gb_month_micros=FIZZ_STORAGE_PER_GB_MONTH,
                    price_per_hour_micros=node_price_per_hour_micros(
                        gpu_count=gpu_count,
                        gpu_price_per_hour_micros=gpu_price,
                        cpu_cores=cores,
                        cpu_price_per_core_month_micros=FIZZ_CPU_PER_CORE_MONTH,
                        memory_gb=memory,
                        memory_price_per_gb_month_micros=FIZZ_MEMORY_PER_GB_MONTH,
                        storage_gb=storage,
                        storage_price_per_gb_month_micros=FIZZ_STORAGE_PER_GB_MONTH,
                    ),
                    status=NodeStatus.ONLINE,
                    is_simulated=False,
                    machine_id=machine_id,
                    hostname=f"gpu-box-{n}",
                    agent_version=AGENT_VERSION,
                    runtime="docker",
                    os="Linux 6.1.0-18-amd64 (Debian GNU/Linux 12)",
                    arch="x86_64",
                    cpu_model=hardware["cpu_model"],
                    driver_version="550.54.15",
                    cuda_version="12.4",
                    hardware=hardware,
                    registered_at=seen,
                    online_since=seen,
                    last_seen_at=seen,
                    rewards_eligible_from=seen,
                    available_gpus=gpu_count,
                    available_cpu_cores=cores,
                    available_memory_gb=memory,
                    available_storage_gb=storage,
                )
            )
        nodes = Node.objects.bulk_create(nodes, batch_size=BATCH)
        agents = []
        for node, machine in zip(nodes, machines, strict=True):
            raw = liveness.node_secret_new(node.id)
            node.secret_hash = liveness.secret_hash(raw)
            agents.append(Agent(node.id, raw, machine))
        Node.objects.bulk_update(nodes, ["secret_hash"], batch_size=1000)
        stake_coverage_refresh(provider=provider)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) providers_node")  # no dead tuples from the secret update
    covered = Node.objects.filter(provider=provider, stake_covered=True).count()
    if covered != count:
        raise RuntimeError(f"the stake covers {covered} of {count} nodes")
    return agents


def cache_clear() -> int:
    """Delete this script's keys (CACHE_KEY_PREFIX) from Redis; other keys stay."""
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    deleted = 0
    batch = []
    for key in client.scan_iter(match=f"{CACHE_PREFIX}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    client.close()
    return deleted


def redis_commands() -> int:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


# --- gunicorn ----------------------------------------------------------------------------------


class Server:
    def __init__(self, args: argparse.Namespace, log_path: Path):
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def port_check(self) -> None:
        """Another server (or another run) on the port would answer our requests."""
        import socket

        with socket.socket() as probe:
            if probe.connect_ex((HOST, self.args.port)) == 0:
                raise RuntimeError(f"something already listens on {HOST}:{self.args.port}; pass another --port")

    def start(self, **env: str) -> None:
        args = self.args
        self.port_check()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "spheron_web.wsgi:application",
            "-w",
            str(args.workers),
            "-b",
            f"{HOST}:{args.port}",
            "--worker-class",
            args.worker_class,
            # gunicorn turns a sync worker with threads > 1 into gthread.
            "--threads",
            str(args.threads if args.worker_class == "gthread" else 1),
            "--no-control-socket",  # not ~/.gunicorn/gunicorn.ctl, which another gunicorn may be using
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import http.client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.proc.returncode}); see {self.log_path}")
            try:
                conn = http.client.HTTPConnection(HOST, self.args.port, timeout=2)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    return
                raise RuntimeError(f"/healthz answered {response.status}; see {self.log_path}")
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:.0f} s; see {self.log_path}")

    def pids(self) -> set[int]:
        """The master and its workers."""
        if self.proc is None:
            return set()
        found = {self.proc.pid}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = _proc_stat(entry.name)
                if stat and stat[1] == self.proc.pid:
                    found.add(int(entry.name))
        return found

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


# --- CPU accounting ----------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: str) -> tuple[str, int, float] | None:
    """(command, parent pid, CPU seconds) of a process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    return comm, int(rest[1]), (int(rest[11]) + int(rest[12])) / CLOCK_TICKS


def cpu_snapshot(server_pids: set[int], database: str) -> dict[str, float]:
    """CPU seconds so far, per process of interest ({pid: seconds}, with its group in `groups`), and
    the whole machine (busy, total). Groups: this client, gunicorn, Redis, and PostgreSQL (the bench
    database's backends and the server's own processes; other databases' backends are "other")."""
    found: dict = {"groups": {}}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(entry.name)
        if stat is None:
            continue
        comm, _ppid, seconds = stat
        pid = int(entry.name)
        if pid == me:
            group = "client"
        elif pid in server_pids:
            group = "gunicorn"
        elif comm.startswith("redis-server"):
            group = "redis"
        elif comm == "postgres":
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    cmdline = handle.read().decode(errors="replace")
            except OSError:
                continue
            backend = "(" in cmdline or "[local]" in cmdline
            if backend and f" {database} " not in cmdline:
                continue
            group = "postgres"
        else:
            continue
        found[pid] = seconds
        found["groups"][pid] = group
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    found["machine busy"] = (sum(values[:8]) - idle) / CLOCK_TICKS
    found["machine total"] = sum(values[:8]) / CLOCK_TICKS
    return found


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per group between two snapshots; "other" is the rest of the machine's busy time."""
    used = {"client": 0.0, "gunicorn": 0.0, "redis": 0.0, "postgres": 0.0}
    for pid, group in after["groups"].items():
        used[group] += after[pid] - before.get(pid, 0.0)
    used["machine busy"] = after["machine busy"] - before["machine busy"]
    used["machine total"] = after["machine total"] - before["machine total"]
    used["other"] = max(0.0, used["machine busy"] - sum(used[g] for g in ("client", "gunicorn", "redis", "postgres")))
    return used


# --- Load generator ----------------------------------------------------------------------------


@dataclass
class LoadResult:
    sent: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # ms
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    not_online: int = 0
    challenges: int = 0
    answered: int = 0
    reconnects: int = 0

    def error(self, kind: str, sample: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_samples) < 5:
            self.error_samples.append(sample[:300])


def heartbeat_body(agent: Agent, index: int) -> bytes:
    """A heartbeat as the agent sends it: usage that moves a little each time, and challenge answers."""
    slug, gpu_count, gpu_name, mib, cores, memory, storage = agent.machine
    seq = agent.sequence
    wobble = (index * 7 + seq * 13) % 50
    body = {
        "agent_version": AGENT_VERSION,
        "sequence": seq,
        "usage": {
            "cpu_percent": 10.0 + wobble,
            "memory_used_gb": round(memory * 0.05 + wobble / 10, 1),
            "storage_free_gb": float(storage - 50),
            "gpu_utilization_percent": [float((wobble + g * 11) % 100) for g in range(gpu_count)],
            "gpu_memory_used_mib": [(wobble * 97 + g) % (mib // 2) for g in range(gpu_count)],
        },
        "challenge_responses": agent.answers,
        "leases": [],
        "stopping": False,
    }
    agent.answers = []
    agent.sequence += 1
    return orjson.dumps(body)


def note_reply(agent: Agent, body: bytes, result: LoadResult) -> None:
    """Check the reply; keep the challenges it carries to answer them in the node's next heartbeat."""
    if b'"status":"online"' not in body:
        result.not_online += 1
    if b'"challenges":[]' in body:
        return
    slug, gpu_count, gpu_name, mib, cores, memory, storage = agent.machine
    measured = {
        "agent_version": AGENT_VERSION,
        "cpu_cores": cores,
        "memory_gb": memory,
        "memory_available_gb": memory - 4,
        "storage_free_gb": storage - 50,
        "gpus": [{"name": gpu_name, "memory_total_mib": mib, "memory_free_mib": mib - 300}] * gpu_count,
    }
    for challenge in orjson.loads(body).get("challenges", []):
        result.challenges += 1
        agent.answers.append({"id": challenge["id"], "nonce": challenge["nonce"], "measured": measured})


async def run_load(
    agents: list[Agent],
    *,
    port: int,
    seconds: float,
    rate: float,
    concurrency: int,
    client: str,
) -> LoadResult:
    """Heartbeats round-robin over the agents for `seconds`.

    With a rate, request k is due at start + k / rate and its latency counts from then (a request
    that waits for a free connection includes the wait: no coordinated omission)."""
    result = LoadResult()
    counter = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    stop_at = started + seconds
    host_header = f"{HOST}:{port}"

    def next_slot() -> tuple[Agent, int, float] | None:
        nonlocal counter
        k = counter
        if loop.time() >= stop_at:
            return None
        counter += 1
        due = started + k / rate if rate else 0.0
        return agents[k % len(agents)], k, due

    async def raw_worker() -> None:
        reader = writer = None
        while True:
            slot = next_slot()
            if slot is None:
                break
            agent, k, due = slot
            if due:
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            had_answers = len(agent.answers)
            body = heartbeat_body(agent, k)
            request = (
                f"POST /api/v1/nodes/{agent.node_id}/heartbeat HTTP/1.1\r\nHost: {host_header}\r\n"
                f"Authorization: Bearer {agent.secret}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            begin = due or loop.time()
            for attempt in range(2):
                reused = writer is not None
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(HOST, port)
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    lowered = head.lower()
                    at = lowered.find(b"content-length:")
                    length = int(lowered[at + 15 : lowered.index(b"\r\n", at)]) if at >= 0 else 0
                    reply = await reader.readexactly(length) if length else b""
                except (OSError, asyncio.IncompleteReadError) as exc:
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    if reused and attempt == 0:  # the server closed an idle keep-alive connection
                        result.reconnects += 1
                        continue
                    result.error("connection", f"{type(exc).__name__}: {exc}")
                    break
                result.latencies.append((loop.time() - begin) * 1000)
                result.sent += 1
                result.answered += had_answers
                if status != 200:
                    result.error(f"HTTP {status}", f"HTTP {status} {reply[:200]!r}")
                else:
                    agent.last_ok = time.monotonic()
                    note_reply(agent, reply, result)
                if b"connection: close" in lowered:  # the sync worker closes after each response
                    writer.close()
                    reader = writer = None
                break
        if writer is not None:
            writer.close()

    async def httpx_worker(session) -> None:
        while True:
            slot = next_slot()
            if slot is None:
                break
            agent, k, due = slot
            if due:
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            had_answers = len(agent.answers)
            body = heartbeat_body(agent, k)
            begin = due or loop.time()
            try:
                response = await session.post(
                    f"/api/v1/nodes/{agent.node_id}/heartbeat",
                    content=body,
                    headers={"Authorization": f"Bearer {agent.secret}", "Content-Type": "application/json"},
                )
            except Exception as exc:  # noqa: BLE001 - a failed request is counted, not fatal
                result.error("connection", f"{type(exc).__name__}: {exc}")
                continue
            result.latencies.append((loop.time() - begin) * 1000)
            result.sent += 1
            result.answered += had_answers
            if response.status_code != 200:
                result.error(f"HTTP {response.status_code}", f"HTTP {response.status_code} {response.content[:200]!r}")
            else:
                agent.last_ok = time.monotonic()
                note_reply(agent, response.content, result)

    if client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=f"http://{host_header}", limits=limits, timeout=30.0, trust_env=False
        ) as session:
            await asyncio.gather(*(httpx_worker(session) for _ in range(concurrency)))
    else:
        await asyncio.gather(*(raw_worker() for _ in range(concurrency)))
    result.elapsed = loop.time() - started
    return result


# --- Report ------------------------------------------------------------------------------------


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else float("nan")


def heartbeats_in_process(agents: list[Agent], threads: int = 4) -> None:
    """One heartbeat for each of these agents through the view's own calls, without HTTP and without
    challenges: `node_authenticate` (credentials into the cache) and `heartbeat_receive` (which also
    asks the assignment sources, e.g. marketplace's cached active leases). A few threads overlap the
    round trips to Redis and PostgreSQL."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections
    from django.test.utils import override_settings

    from providers.liveness import heartbeat_receive, node_authenticate

    def beat(part: list[Agent]) -> None:
        try:
            for agent in part:
                found = node_authenticate(agent.secret)
                if found is None:
                    raise RuntimeError(
                        f"node {agent.node_id}'s fresh secret was refused: stale credentials in the cache "
                        "(another run on the same --redis-url?)"
                    )
                node_id, info = found
                body = orjson.loads(heartbeat_body(agent, agent.sequence))
                heartbeat_receive(
                    node_id=node_id,
                    info=info,
                    sequence=body["sequence"],
                    agent_version=body["agent_version"],
                    usage=body["usage"],
                    challenge_responses=[],
                    leases=[],
                    stopping=False,
                )
        finally:
            connections.close_all()  # this thread's connection

    with override_settings(NODE_CHALLENGES_PER_HOUR=0), ThreadPoolExecutor(threads) as pool:
        list(pool.map(beat, [agents[k::threads] for k in range(threads)]))  # re-raises a thread's error


def timed_fold(now) -> tuple[dict[str, int], float, int]:
    """One fold_heartbeats(now=now) as the beat task runs it: (its stats, seconds, queries)."""
    from django.db import connection

    from providers.liveness import fold_heartbeats

    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        started = time.perf_counter()
        stats = fold_heartbeats(now=now)
        elapsed = time.perf_counter() - started
    connection.close()  # its backend exits and reports its counters
    return stats, elapsed, queries


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the run like Ctrl-C: gunicorn is stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_environment(args)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (e.g. `&`)
    log_path = Path(tempfile.gettempdir()) / f"heartbeat-bench-gunicorn-{os.getpid()}.log"
    server = Server(args, log_path)
    stats_db: DbStats | None = None
    try:
        try:
            started = time.perf_counter()
            server.port_check()
            database_reset(args.database_url, force=args.force)
            migrate()
            import django

            django.setup()
            from django.conf import settings
            from django.db import connection

            from core import clock

            cache_clear()
            agents = create_population(args.nodes)
            connection.close()
            print(
                f"Created database {database_name(args.database_url)!r} with {len(agents):,} agent nodes "
                f"in {time.perf_counter() - started:.1f} s."
            )
            # A node's first heartbeat reads what the hot path caches (its credentials, its active leases)
            # from the database; the cache keeps them 5 minutes. Warm it the same way, in-process.
            started = time.perf_counter()
            heartbeats_in_process(agents)
            connection.close()
            print(
                f"Warm-up: one heartbeat per node in-process (fills the caches the first heartbeat fills) "
                f"in {time.perf_counter() - started:.1f} s."
            )
            stats_db = DbStats(args.database_url)
            before = stats_db.read()
            server.start()
        except Exception as exc:  # noqa: BLE001 - any setup failure ends the run with a message
            print(f"setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1

        server_text = f"gunicorn -w {args.workers} --worker-class {args.worker_class}" + (
            f" --threads {args.threads}" if args.worker_class == "gthread" else ""
        )
        print(f"{server_text} on {HOST}:{args.port}; its log (deleted unless a request fails): {log_path}")
        redis_before = redis_commands()
        pids = server.pids()
        cpu_before = cpu_snapshot(pids, database_name(args.database_url))
        rusage_before = resource.getrusage(resource.RUSAGE_SELF)
        # This process is the measuring instrument: a full garbage collection over its long-lived
        # objects (13,000 agents, their pre-built requests, Django) would stall every connection for
        # tens of milliseconds and count as server latency. Frozen objects are never scanned.
        gc.collect()
        gc.freeze()
        load = asyncio.run(
            run_load(
                agents,
                port=args.port,
                seconds=args.seconds,
                rate=args.rate,
                concurrency=args.concurrency,
                client=args.client,
            )
        )
        rusage_after = resource.getrusage(resource.RUSAGE_SELF)
        gc.unfreeze()
        cpu_after = cpu_snapshot(pids, database_name(args.database_url))
        redis_after = redis_commands()
        server.stop()  # its database connections close, and their backends report their counters
        after = stats_db.read()

        # The fold as it runs every 15 s with every node heartbeating: nodes the load did not reach in
        # the last two intervals get one heartbeat in-process first, so that none is taken offline.
        recent = time.monotonic() - 2 * settings.NODE_HEARTBEAT_INTERVAL_SECONDS
        stale = [agent for agent in agents if agent.last_ok < recent]
        heartbeats_in_process(stale)
        connection.close()
        fold_before = stats_db.read()
        fold_now = clock.now()  # both folds run "now": the second finds nothing due
        fold_stats, fold_seconds, fold_queries = timed_fold(fold_now)
        fold_after = stats_db.read()
        idle_stats, idle_seconds, idle_queries = timed_fold(fold_now)
        idle_after = stats_db.read()
        challenge_statuses = stats_db.challenges()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        server.stop()
        if stats_db is not None:
            stats_db.close()
        try:
            cache_clear()
        except Exception:  # noqa: BLE001, S110 - best effort
            pass
    if not load.errors:
        log_path.unlink(missing_ok=True)  # kept when a request failed, to see why

    # --- Figures ---
    n = load.sent
    rate = n / load.elapsed if load.elapsed else 0.0
    lat = load.latencies
    p50, p95, p99 = statistics.median(lat) if lat else math.nan, percentile(lat, 0.95), percentile(lat, 0.99)
    errors = sum(load.errors.values())
    writes = after.writes - before.writes
    commits = after.commits - before.commits
    cpu = cpu_used(cpu_before, cpu_after)
    client_cpu = rusage_after.ru_utime + rusage_after.ru_stime - rusage_before.ru_utime - rusage_before.ru_stime
    fold_cadence = settings.CELERY_BEAT_SCHEDULE["fold-heartbeats"]["schedule"]
    resolution = settings.NODE_LAST_SEEN_RESOLUTION_SECONDS
    interval = settings.NODE_HEARTBEAT_INTERVAL_SECONDS
    nodes = len(agents)

    print()
    print(
        f"database: {database_name(args.database_url)} (PostgreSQL); cache: Redis {args.redis_url}; "
        f"{server_text}; client: {args.client}, {args.concurrency} connections, "
        f"rate {'as fast as possible' if not args.rate else f'{args.rate:,.0f}/s'}"
    )
    print(f"  nodes                 {nodes:>10,}   (one heartbeat each per {interval} s = {nodes / interval:,.0f}/s)")
    print(f"  duration              {load.elapsed:>10.1f} s")
    print(f"  heartbeats sent       {n:>10,}   ({n / nodes:.1f} per node)")
    print(
        f"  heartbeats/s          {rate:>10,.0f}"
        + (f"   (enough for one heartbeat per node every {nodes / rate:.0f} s)" if rate else "")
    )
    print(
        f"  latency ms            p50 {p50:.2f}   p95 {p95:.2f}   p99 {p99:.2f}   max {max(lat, default=math.nan):.2f}"
        + ("   (from each request's due time)" if args.rate else "")
    )
    print(f"  errors (non-200)      {errors:>10,}" + (f"   {load.errors}" if errors else ""))
    for sample in load.error_samples:
        print(f"    {sample}")
    if load.not_online:
        print(f"  replies not 'online'  {load.not_online:>10,}")
    if settings.NODE_CHALLENGES_PER_HOUR:
        one_in = 3600 / (float(settings.NODE_CHALLENGES_PER_HOUR) * interval)
        print(
            f"  challenges            {load.challenges:>10,} received, {load.answered:,} answered "
            f"(one heartbeat in {one_in:.0f} gets one); in the database now: "
            + ", ".join(f"{count:,} {status}" for status, count in challenge_statuses.items())
        )
    if load.reconnects:
        print(f"  keep-alive reconnects {load.reconnects:>10,}   (the server had closed an idle connection)")
    print(
        f"  DB writes/s           {writes / load.elapsed:>10,.1f}   ({writes:,} rows inserted+updated+deleted, "
        f"{writes / n * 1000 if n else 0:.1f} per 1,000 heartbeats)"
    )
    print(f"  DB commits/s          {commits / load.elapsed:>10,.1f}   ({commits:,} transactions)")
    print(f"    rows by table: {table_changes(before, after)}")
    redis_count = redis_after - redis_before
    print(
        f"  Redis commands        {redis_count:>10,}   ({redis_count / n if n else 0:.2f} per heartbeat; "
        "counted by the whole Redis server, other clients included)"
    )
    wall = load.elapsed
    shares = ", ".join(
        f"{name} {cpu[name] / wall * 100:.0f}%" for name in ("gunicorn", "client", "postgres", "redis", "other")
    )
    busy = cpu["machine busy"] / max(cpu["machine total"], 1e-9) * 100
    print(f"  CPU (% of one core)   {shares}; the machine was {busy:.0f}% busy ({os.cpu_count()} cores)")
    print(
        f"  CPU per heartbeat     gunicorn {cpu['gunicorn'] / n * 1e3 if n else 0:.2f} ms, "
        f"client {client_cpu / n * 1e3 if n else 0:.2f} ms, redis {cpu['redis'] / n * 1e3 if n else 0:.2f} ms, "
        f"postgres {cpu['postgres'] / n * 1e3 if n else 0:.2f} ms"
    )
    print(
        "    (the client runs on the same cores as gunicorn, Redis and PostgreSQL and takes its CPU from them; "
        '"other" is every other process on the machine)'
    )
    if n:
        server_ms = (cpu["gunicorn"] + cpu["redis"] + cpu["postgres"]) / n * 1e3
        cores = os.cpu_count() or 1
        print(
            f"  CPU-bound ceiling     ~{cores * 1000 / (server_ms + client_cpu / n * 1e3):,.0f}/s with this client on "
            f"the same {cores} cores and nothing else running; ~{cores * 1000 / server_ms:,.0f}/s with the client "
            "elsewhere (from the CPU per heartbeat above)"
        )
    print()
    fold_writes = fold_after.writes - fold_before.writes
    if stale:
        print(
            f"{len(stale):,} nodes had no heartbeat from the load in the last {2 * interval} s: "
            "each got one through heartbeat_receive() in-process (no HTTP) before the fold."
        )
    print(
        f"fold_heartbeats() after the load: {fold_seconds:.2f} s, {fold_queries} queries, "
        f"returned {fold_stats}; DB writes {fold_writes:,}, commits {fold_after.commits - fold_before.commits:,}"
    )
    print(f"  rows by table: {table_changes(fold_before, fold_after)}")
    if fold_stats.get("offline"):
        print(
            f"  ({fold_stats['offline']:,} nodes had no heartbeat for {settings.NODE_OFFLINE_AFTER_SECONDS} s: "
            "the load did not reach them in time, and the fold took them offline, one transaction each)"
        )
    print(
        f"fold again at the same moment, nothing due: {idle_seconds:.2f} s, {idle_queries} queries, "
        f"returned {idle_stats}; DB writes {idle_after.writes - fold_after.writes:,}"
    )
    per_fold_rows = nodes * fold_cadence / resolution
    estimate = idle_seconds + max(0.0, fold_seconds - idle_seconds) * min(1.0, fold_cadence / resolution)
    print(
        f"  a fold every {fold_cadence} s, last_seen_at written at most once per {resolution} s per node: "
        f"{nodes / resolution:,.0f} rows/s for {nodes:,} nodes, ~{per_fold_rows:,.0f} rows per fold, "
        f"~{estimate:.1f} s per fold (the second run plus {fold_cadence}/{resolution} of the first one's updates)"
    )
    print()
    if args.rate:
        # Paced: the server kept up if it answered (almost) everything offered in the window; the
        # measured rate of a 1,000/s schedule is 999.x/s because the window includes the last reply.
        kept_up = rate >= 0.995 * args.rate
        passed = kept_up and args.rate >= RATE_BUDGET
        note = f"{rate:,.1f}/s of {args.rate:,.0f}/s offered" + ("" if kept_up else ": the queue grew")
    else:
        passed, note = rate >= RATE_BUDGET, f"{rate:,.0f}/s"
    print(f"budget: >= {RATE_BUDGET:,.0f} heartbeats/s: {'PASS' if passed else 'FAIL'} ({note})")
    print(f"budget: p95 <= {P95_BUDGET_MS:.0f} ms: {'PASS' if p95 <= P95_BUDGET_MS else 'FAIL'} ({p95:.2f} ms)")
    print(f"budget: no errors: {'PASS' if errors == 0 else 'FAIL'} ({errors})")
    if not args.rate:
        print(
            "(at --rate 0 every connection waits in the server's queue, so p95 ~ concurrency / throughput; "
            "run --rate 1000 for the latency at the budget's load)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
