"""The commands of `sphnctl` (see spheron_sdk.cli for --json and the exit codes)."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from itertools import islice
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from spheron_sdk import __version__
from spheron_sdk.cli import config
from spheron_sdk.client import Client
from spheron_sdk.errors import (
    ApiError,
    AuthError,
    InsufficientFunds,
    NetworkError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ValidationError,
)
from spheron_sdk.offer_query import FIELDS, offer_query

EXIT_CODES = {"ok": 0, "error": 1, "usage": 2, "not_found": 3, "auth": 4, "insufficient_funds": 5, "network": 6}
_state: dict[str, Any] = {"json": False}
console = Console()
if not console.is_terminal and "COLUMNS" not in os.environ:
    # Piped or captured: no screen to fit, so Rich's 80 columns would only squeeze tables into
    # folded cells. COLUMNS still sets a width.
    console.width = 160
error_console = Console(stderr=True)
# An API time (ISO 8601, microseconds, offset) in a table cell: to the second, in UTC.
_API_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(?:Z|\+00:00)$")


def cell(value: Any) -> Text:
    """A table cell: the value as plain text (never markup); an API time shortened to the second."""
    text = "" if value is None else str(value)
    when = _API_TIME.match(text)
    return Text(f"{when.group(1)} {when.group(2)}" if when else text)


def exit_code_for(exc: ApiError) -> int:
    if isinstance(exc, NotFound):
        return EXIT_CODES["not_found"]
    if isinstance(exc, AuthError | PermissionDenied):
        return EXIT_CODES["auth"]
    if isinstance(exc, InsufficientFunds):
        return EXIT_CODES["insufficient_funds"]
    if isinstance(exc, NetworkError | ServerError | RateLimited):
        return EXIT_CODES["network"]
    if isinstance(exc, ValidationError):
        return EXIT_CODES["usage"]
    return EXIT_CODES["error"]


def print_error(error: dict[str, Any]) -> None:
    if _state["json"]:
        click.echo(json.dumps({"error": error}, indent=2, default=str))
        return
    error_console.print(f"[bold red]Error:[/] {escape(str(error['message']))}", highlight=False)
    for field in error.get("fields") or []:
        line = f" (line {field['line']})" if field.get("line") else ""
        error_console.print(f"  {field.get('field')}: {field.get('message')}{line}", highlight=False, markup=False)
    top_up = (error.get("extra") or {}).get("top_up_url")
    if top_up:
        error_console.print(f"  Add credits: {top_up}", highlight=False, markup=False)


def emit(data: Any, render: Callable[[], None]) -> None:
    """--json: the data as JSON on stdout; else the readable form."""
    if _state["json"]:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render()


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]], *, title: str | None = None) -> None:
    rows = list(rows)
    if not rows:  # a header over nothing reads like a broken table
        console.print(Text(f"{title}: none." if title else "None yet.", style="dim"))
        return
    grid = Table(title=title, show_lines=False)
    for column in columns:
        grid.add_column(column, overflow="fold")  # ids, hashes and addresses whole, never cut with …
    for row in rows:
        grid.add_row(*[cell(value) for value in row])
    console.print(grid)


def pairs(data: dict[str, Any], keys: Iterable[str]) -> None:
    grid = Table.grid(padding=(0, 2))
    for key in keys:
        value = data.get(key)
        grid.add_row(Text(key, style="bold"), cell(value))
    console.print(grid)


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--json after the command too (`sphnctl balance --json`), same as before it."""

    def remember(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            _state["json"] = True
        return value

    return click.option(
        "--json", "as_json", is_flag=True, expose_value=False, callback=remember, is_eager=True, help="Print JSON."
    )(command)


def client() -> Client:
    ctx = click.get_current_context()
    options = ctx.find_root().params
    settings = config.resolve(server=options.get("server"), api_key=options.get("api_key"))
    if settings.api_key is None:
        raise AuthError("No API key: run `sphnctl login`, set SPHERON_API_KEY or pass --api-key.")
    made = Client(settings.server, settings.api_key, timeout=options.get("timeout") or 30.0)
    ctx.call_on_close(made.close)
    return made


def _server_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return config.normalize_server(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", callback=_server_option, help="API server URL (default: the logged-in one, SPHERON_SERVER).")
@click.option("--api-key", help="API key (default: SPHERON_API_KEY, then the one `login` stored).")
@click.option("--timeout", type=click.FloatRange(1, 600), default=30.0, show_default=True, help="Seconds per request.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable; see the README).")
@click.version_option(__version__, prog_name="sphnctl")
def cli(server: str | None, api_key: str | None, timeout: float, as_json: bool) -> None:
    """Spheron Web from a terminal: offers, the model store, deployments, logs, balance, top-ups,
    low-balance alerts and auto-reload, provider nodes, stake and earnings, and the fizz agent.

    Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 auth, 5 insufficient funds, 6 network/server."""
    _state["json"] = as_json


# --- account -----------------------------------------------------------------------------------------


@cli.command()
@click.option("--key", "key", help="The API key (sph_…); asked for when not given.")
@json_option
def login(key: str | None) -> None:
    """Check an API key and store it (with the server) in the user's config directory, owner-only."""
    options = click.get_current_context().find_root().params
    if not key:
        key = click.prompt("API key", hide_input=True, err=True).strip()
    settings = config.resolve(server=options.get("server"), api_key=key)
    with Client(settings.server, settings.api_key, timeout=options.get("timeout") or 30.0) as api:
        api.billing.balance()  # a wrong key is a 401 here, before anything is stored
    stored = config.load()
    path = config.save({**stored, "server": settings.server, "api_key": key})
    data = {"server": settings.server, "key_prefix": key[:12], "config_path": str(path)}
    emit(data, lambda: console.print(f"Logged in to {settings.server}; key {key[:12]}… stored in {path}"))


@cli.command()
@json_option
def logout() -> None:
    """Forget the stored API key."""
    stored = config.load()
    had = stored.pop("api_key", None) is not None
    path = config.save(stored)
    emit({"removed": had, "config_path": str(path)}, lambda: console.print("Logged out." if had else "No key stored."))


@cli.command()
@json_option
def whoami() -> None:
    """The account and key in use (its scopes and daily cap), where the key comes from, the balance."""
    options = click.get_current_context().find_root().params
    settings = config.resolve(server=options.get("server"), api_key=options.get("api_key"))
    data = {**client().whoami(), "key_source": settings.key_source}
    emit(
        data,
        lambda: pairs(
            {
                **data,
                "roles": ", ".join(data.get("roles") or []),
                "scopes": ", ".join(data.get("scopes") or []),
                "available": data["balance"]["available"],
                "reserved": data["balance"]["reserved"],
            },
            [
                "server",
                "email",
                "roles",
                "key_prefix",
                "scopes",
                "daily_spend_cap",
                "key_source",
                "available",
                "reserved",
            ],
        ),
    )


@cli.command()
@json_option
def balance() -> None:
    """Available, reserved (held for deployments) and owed credits, USD."""
    data = client().billing.balance()
    emit(data, lambda: pairs(data, ["available", "reserved", "debt"]))


# --- offers and the market ---------------------------------------------------------------------------


@cli.group()
def offers() -> None:
    """Search the listed offers."""


FIELD_HELP = "Fields: " + ", ".join(f"{name} ({field.help})" for name, field in FIELDS.items())


@offers.command("search", epilog=FIELD_HELP)
@click.argument("query", nargs=-1)
@click.option(
    "-o", "--order", "order", default=None, help="Sort: price, uptime, vram, price_per_vram; add - for descending."
)
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many.")
@json_option
def offers_search(query: tuple[str, ...], order: str | None, limit: int) -> None:
    """Offers matching QUERY, e.g. 'gpu_model=rtx4090 vram>=24 region in [us-east,eu-west] uptime>0.98'.

    Operators: = != < <= > >= in notin (in/notin take [a,b])."""
    parsed = offer_query(" ".join(query), order)  # QueryError: exit 2, before any request
    found = list(client().offers.search(parsed, max_results=limit))
    emit(
        found,
        lambda: table(
            ["node", "gpu", "gpus", "vram", "region", "mode", "tier", "$/h", "$/gpu-h", "uptime 30d", "provider"],
            [
                [
                    o["node_id"], o["gpu_model"], f"{o['available_gpus']}/{o['gpu_count']}", o["vram_gb"], o["region"],
                    o["mode"], o["trust_tier"], o["price_per_hour"], o["price_per_gpu_hour"],
                    f"{o['uptime_30d']:.3f}", o["provider"],
                ]
                for o in found
            ],
            title=f"{len(found)} offers",
        ),
    )  # fmt: skip


@offers.command("get")
@click.argument("node_id", type=click.IntRange(1))
@json_option
def offers_get(node_id: int) -> None:
    """One offer by node id."""
    data = client().offers.get(node_id)
    emit(data, lambda: pairs(data, list(data)))


@cli.command()
@click.option("--region", default=None)
@click.option("--mode", type=click.Choice(["fizz", "provider"]), default=None)
@json_option
def market(region: str | None, mode: str | None) -> None:
    """Per GPU model: offers, free GPUs, lowest and median price per GPU-hour."""
    rows = client().market.board(region=region, mode=mode)
    emit(
        rows,
        lambda: table(
            ["gpu", "name", "vram", "offers", "free", "lowest $/gpu-h", "median $/gpu-h"],
            [
                [r["gpu_model"], r["name"], r["vram_gb"], r["offers"], r["free_gpus"],
                 r["lowest_price_per_gpu_hour"], r["median_price_per_gpu_hour"]]
                for r in rows
            ],
        ),
    )  # fmt: skip


# --- deployments -------------------------------------------------------------------------------------


@cli.group()
def deployment() -> None:
    """Create, inspect and close deployments."""


def _spec_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="SPEC") from None


def _show_deployment(data: dict[str, Any]) -> None:
    lease = data.get("lease") or {}
    pairs(
        {
            **data,
            "node": f"{lease.get('node_name')} (#{lease.get('node_id')}, {lease.get('region')})" if lease else None,
            "agent": lease.get("agent_state"),
        },
        ["id", "name", "status", "mode", "node", "agent", "max_price_per_hour", "cost_so_far", "created_at",
         "started_at", "closed_at", "close_reason", "failure_reason", "url"],
    )  # fmt: skip


@deployment.command("create")
@click.argument("spec")
@click.option("--dry-run", is_flag=True, help="Validate and estimate only: nothing is held or created.")
@click.option("--wait", is_flag=True, help="Show progress until it runs, fails or closes.")
@click.option("--wait-timeout", type=click.FloatRange(1), default=600, show_default=True, help="Seconds for --wait.")
@json_option
def deployment_create(spec: str, dry_run: bool, wait: bool, wait_timeout: float) -> None:
    """Deploy SPEC (a YAML file; - for stdin)."""
    text = _spec_text(spec)
    api = client()
    if dry_run:
        result = api.deployments.validate(text)
        if not result["valid"]:
            raise ValidationError(
                "The spec is not valid.", status=422, fields=result["errors"], extra={"errors": result["errors"]}
            )
        estimate = result["estimate"] or {}
        emit(
            result,
            lambda: pairs(
                {**estimate, "available": result["available"], "enough_credits": result["enough_credits"]},
                ["max_price_per_hour", "max_total", "hold", "hold_hours", "available", "enough_credits"],
            ),
        )
        if result["enough_credits"] is False:
            click.get_current_context().exit(EXIT_CODES["insufficient_funds"])
        return
    created = api.deployments.create(text)
    message = f"Deployment {created['id']} created ({created['status']}): {created['url']}"
    _created(api, dict(created), message=message, wait=wait, wait_timeout=wait_timeout)


def _created(api: Client, created: dict[str, Any], *, message: str, wait: bool, wait_timeout: float) -> None:
    """A deployment just created: `message` (--json: the API's answer), or with --wait its progress
    until it runs, then the deployment (exit 1 when it failed or closed instead)."""
    if not wait:
        emit(created, lambda: console.print(message))
        return
    final = _wait(api, created["id"], wait_timeout)
    emit(final, lambda: _show_deployment(final))
    if final["status"] != "running":
        click.get_current_context().exit(EXIT_CODES["error"])


def _wait(api: Client, deployment_id: int, timeout: float) -> dict[str, Any]:
    if _state["json"]:
        return dict(api.deployments.wait(deployment_id, timeout=timeout))
    with error_console.status(f"Deployment {deployment_id}: pending") as status:

        def changed(current: dict[str, Any]) -> None:
            status.update(f"Deployment {deployment_id}: {current['status']}")
            error_console.print(f"  {current['status']}", highlight=False)

        return dict(api.deployments.wait(deployment_id, timeout=timeout, on_change=changed))


@deployment.command("list")
@click.option("--status", type=click.Choice(["pending", "matched", "provisioning", "running", "closed", "failed"]))
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
def deployment_list(status: str | None, limit: int) -> None:
    """Your deployments, newest first."""
    rows = []
    for item in client().deployments.list(status=status):
        rows.append(item)
        if len(rows) >= limit:
            break
    emit(
        rows,
        lambda: table(
            ["id", "name", "status", "gpu", "node", "$/h", "cost so far", "created"],
            [[r["id"], r["name"], r["status"], r["gpu_model"], r["node_id"], r["price_per_hour"], r["cost_so_far"],
              r["created_at"]] for r in rows],
        ),
    )  # fmt: skip


@deployment.command("get")
@click.argument("deployment_id", type=click.IntRange(1))
@json_option
def deployment_get(deployment_id: int) -> None:
    """A deployment: status, lease, cost so far."""
    data = client().deployments.get(deployment_id)
    emit(data, lambda: _show_deployment(dict(data)))


@deployment.command("events")
@click.argument("deployment_id", type=click.IntRange(1))
@json_option
def deployment_events(deployment_id: int) -> None:
    """The deployment's timeline."""
    items = client().deployments.events(deployment_id)
    emit(items, lambda: table(["at", "kind", "message"], [[e["at"], e["kind"], e["message"]] for e in items]))


@deployment.command("close")
@click.argument("deployment_id", type=click.IntRange(1))
@json_option
def deployment_close(deployment_id: int) -> None:
    """Close it: the workload stops, usage is settled, the rest of the hold released."""
    data = client().deployments.close(deployment_id)
    emit(data, lambda: console.print(f"Deployment {data['id']}: {data['status']} (cost {data['cost_so_far']} USD)"))


@deployment.command("redeploy")
@click.argument("deployment_id", type=click.IntRange(1))
@click.option("--wait", is_flag=True, help="Show progress until the new one runs, fails or closes.")
@click.option("--wait-timeout", type=click.FloatRange(1), default=600, show_default=True, help="Seconds for --wait.")
@json_option
def deployment_redeploy(deployment_id: int, wait: bool, wait_timeout: float) -> None:
    """Deploy a deployment pinned to one node again on any similar node: a new deployment with the
    same spec less the pin (same GPU model, resources and price cap). The old one is closed if it
    still runs. Not pinned: exit 1 with the server's message."""
    api = client()
    created = api.deployments.redeploy(deployment_id)
    message = (
        f"Deployment {created['id']} created ({created['status']}) from {created['redeployed_from']}, "
        f"which is closed: {created['url']}"
    )
    _created(api, dict(created), message=message, wait=wait, wait_timeout=wait_timeout)


@deployment.command("logs")
@click.argument("deployment_id", type=click.IntRange(1))
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the deployment ends.")
@click.option("--tail", type=click.IntRange(1, 100_000), default=None, help="Start with the last N lines.")
@click.option("--poll", type=click.FloatRange(0.2, 60), default=2.0, show_default=True, help="Seconds between polls.")
@json_option
def deployment_logs(deployment_id: int, follow: bool, tail: int | None, poll: float) -> None:
    """The workload's log lines (with --json: one JSON object per line)."""
    api = client()
    after = 0
    if tail is not None:
        lines = api.deployments.tail(deployment_id, tail)
        for line in lines:
            _print_line(line)
        if not follow:
            return
        after = lines[-1]["id"] if lines else _last_line_id(api, deployment_id)
    for line in api.deployments.iter_logs(deployment_id, after=after, follow=follow, poll_interval=poll):
        _print_line(line)


def _last_line_id(api: Client, deployment_id: int) -> int:
    last = 0
    for line in api.deployments.iter_logs(deployment_id):
        last = line["id"]
    return last


def _print_line(line: dict[str, Any]) -> None:
    if _state["json"]:
        click.echo(json.dumps(line, default=str))
    else:
        click.echo(line["line"], err=line["stream"] == "stderr")


def on_chain_line(chain: dict[str, Any]) -> str:
    """What `verify --on-chain` found in LeaseRegistry, in one line."""
    where = f"LeaseRegistry {chain['registry']} on chain {chain['chain_id']}, lease {chain['lease_id']}"
    said = "the same commitment is recorded" if chain["matches"] else chain["problem"]
    return f"on chain: {said} ({where})"


@deployment.command("verify")
@click.argument("deployment_id", type=click.IntRange(1))
@click.option("--on-chain", is_flag=True, help="Also read the commitment from the chain's LeaseRegistry.")
@click.option("--rpc-url", default=None, help="The chain's RPC (default: the one the proof names).")
@json_option
def deployment_verify(deployment_id: int, on_chain: bool, rpc_url: str | None) -> None:
    """Recompute the match from its proof: the winner and the commitment must agree."""
    result = client().deployments.verify(deployment_id, on_chain=on_chain, rpc_url=rpc_url)
    data = {key: value for key, value in result.items() if key != "scores"} | {"scores": result.get("scores")}

    def render() -> None:
        console.print(
            ("[green]verified[/]" if result["ok"] else "[red]does not verify[/]")
            + f": winner {result['winner']}, commitment {result['commitment']}"
        )
        chain = result.get("on_chain")
        if chain:
            console.print(Text(on_chain_line(chain), style="green" if chain["matches"] else "red"))

    emit(data, render)
    if not result["ok"]:
        click.get_current_context().exit(EXIT_CODES["error"])


# --- money -------------------------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@click.pass_context
def deposits(ctx: click.Context, limit: int) -> None:
    """Your crypto deposits and their state (default); `check` one by its transaction."""
    if ctx.invoked_subcommand is not None:
        return
    rows = []
    for item in client().billing.deposits():
        rows.append(item)
        if len(rows) >= limit:
            break
    emit(rows, lambda: _deposit_rows(rows))


def _deposit_rows(rows: list[dict[str, Any]]) -> None:
    table(
        ["id", "chain", "token", "amount", "status", "confirmations", "credit $", "tx"],
        [[d["id"], d["chain"], d["token"], d["amount"], d["status"], f"{d['confirmations']}/{d['finality']}",
          d["credit_usd"], d["tx_hash"]] for d in rows],
    )  # fmt: skip


@deposits.command("check")
@click.option("--chain", "chain_key", required=True, help="The chain's key (see `sphnctl chains`), e.g. base.")
@click.option("--tx", "tx_hash", required=True, help="The transaction hash (or Solana signature) you sent.")
@json_option
def deposits_check(chain_key: str, tx_hash: str) -> None:
    """Read a deposit's transaction from the chain now, without waiting for the watcher; a final
    deposit is credited before this returns."""
    result = client().billing.check_deposit(chain_key, tx_hash)
    emit(result, lambda: pairs(result, list(result)))


@cli.command()
@json_option
def chains() -> None:
    """Chains you can deposit on, with their tokens."""
    rows = client().chains.list()
    emit(
        rows,
        lambda: table(
            ["key", "name", "chain id", "finality", "tokens"],
            [[c["key"], c["name"], c["chain_id"], c["finality"], ", ".join(t["symbol"] for t in c["tokens"])]
             for c in rows],
        ),
    )  # fmt: skip


@cli.command()
@json_option
def wallets() -> None:
    """Your linked addresses (payout, stake) and where to link one (signing needs your wallet: the
    page /account/wallets/, or Client.wallets.nonce/link from Python)."""
    data = client().wallets.list()

    def render() -> None:
        # One address a line (42 characters, never folded), what else is known beneath it.
        grid = Table.grid(padding=(0, 2))
        for purpose in ("payout", "stake"):
            link = (data.get("current") or {}).get(purpose)
            if link is None:
                grid.add_row(Text(purpose, style="bold"), Text("none (link one on /account/wallets/)"))
                continue
            grid.add_row(Text(purpose, style="bold"), Text(link["address"]))
            grid.add_row(Text(""), Text(f"chain {link['chain_id']}, linked {link['linked_at']}", style="dim"))
        for link in data.get("history", []):
            if link.get("revoked_at"):
                grid.add_row(Text(f"{link['purpose']} (earlier)"), Text(link["address"]))
                grid.add_row(Text(""), Text(f"linked {link['linked_at']}, revoked {link['revoked_at']}", style="dim"))
        console.print(grid)

    emit(data, render)


# --- providers ---------------------------------------------------------------------------------------


@cli.group()
def provider() -> None:
    """Your nodes, node tokens, rewards, stake, earnings, list prices, payouts and slashes (provider accounts)."""


@provider.group("nodes", invoke_without_command=True)
@json_option
@click.pass_context
def provider_nodes(ctx: click.Context) -> None:
    """Your nodes (default: list); maintenance on or off."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(provider_nodes_list)


def _node_rows(rows: list[dict[str, Any]]) -> None:
    table(
        ["id", "name", "gpu", "gpus", "region", "mode", "status", "tier", "$/h", "maint.", "last seen"],
        [[n["id"], n["name"], n["gpu_model"], n["gpu_count"], n["region"], n["mode"], n["status"],
          n["trust_tier"], n["price_per_hour"], "on" if n.get("in_maintenance") else "", n["last_seen_at"]]
         for n in rows],
    )  # fmt: skip


@provider_nodes.command("list")
@json_option
def provider_nodes_list() -> None:
    """Your nodes with status, tiers, price and last heartbeat."""
    rows = client().provider.nodes()
    emit(rows, lambda: _node_rows(rows))


@provider_nodes.command("maintenance")
@click.argument("node_id", type=int)
@click.option(
    "--on/--off", "on", required=True, help="--on: take no new leases (running ones go on); --off: rent again."
)
@json_option
def provider_nodes_maintenance(node_id: int, on: bool) -> None:
    """Put NODE_ID in maintenance (no new leases) or take it out."""
    node = client().provider.maintenance(node_id, on=on)
    emit(node, lambda: _node_rows([node]))


@provider.group("tokens", invoke_without_command=True)
@json_option
@click.pass_context
def provider_tokens(ctx: click.Context) -> None:
    """Node tokens for `fizz start --token` (default: list); create, revoke."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(provider_tokens_list)


def _token_rows(rows: list[dict[str, Any]]) -> None:
    table(
        ["id", "label", "mode", "prefix", "node", "created", "revoked"],
        [[t["id"], t["label"], t["mode"], t["prefix"], t["node_id"], t["created_at"], t["revoked_at"]]
         for t in rows],
    )  # fmt: skip


@provider_tokens.command("list")
@json_option
def provider_tokens_list() -> None:
    """Your node tokens (their prefix only: the whole token is shown once, when made)."""
    rows = client().provider.tokens()
    emit(rows, lambda: _token_rows(rows))


@provider_tokens.command("create")
@click.option("--label", required=True, help="Which machine it is for, e.g. 'gaming-pc'.")
@click.option("--mode", type=click.Choice(["fizz", "provider"]), default=None, help="Default: your profile's.")
@click.option("--region", default=None, help="A region key, e.g. eu-west. Default: your profile's.")
@json_option
def provider_tokens_create(label: str, mode: str | None, region: str | None) -> None:
    """A node token, printed once with the command that starts the agent with it."""
    api = client()
    token = api.provider.create_token(label, mode=mode, region=region)

    def render() -> None:
        _token_rows([token])
        console.print("The token (copy it now, it is not shown again):", highlight=False)
        click.echo(token["token"] or "")  # never wrapped: copied as it is
        console.print("Start the agent on the machine with:", highlight=False)
        click.echo(f"fizz start --server {api.base_url} --token {token['token']}")

    emit(token, render)


@provider_tokens.command("revoke")
@click.argument("token_id", type=int)
@json_option
def provider_tokens_revoke(token_id: int) -> None:
    """Revoke TOKEN_ID at once: a node not yet registered with it can no longer register."""
    token = client().provider.revoke_token(token_id)
    emit(token, lambda: _token_rows([token]))


@provider.command("rewards")
@click.option("-n", "--limit", type=click.IntRange(1, 100), default=10, show_default=True, help="Eras.")
@json_option
def provider_rewards(limit: int) -> None:
    """Claimable $SPON and the latest eras."""
    data = client().provider.rewards(limit=limit)
    emit(data, lambda: pairs(data, ["address", "cumulative", "claimed", "claimable_spon", "claimable_usd", "earned",
                                    "era_count", "note"]))  # fmt: skip


@provider.command("stake")
@json_option
def provider_stake() -> None:
    """Staked $SPON, what your nodes need, the shortfall and the latest changes."""
    data = client().provider.stake()

    def render() -> None:
        pairs(
            {**data, "uncovered_nodes": ", ".join(data["uncovered_nodes"]) or "none"},
            ["staked_spon", "required_spon", "shortfall_spon", "covered", "min_per_gpu_spon", "units",
             "uncovered_nodes"],
        )  # fmt: skip
        if data["history"]:
            table(
                ["at", "kind", "$SPON", "balance after", "source", "reason"],
                [[e["created_at"], e["kind"], e["amount_spon"], e["balance_after_spon"], e["source"], e["reason"]]
                 for e in data["history"]],
                title="Stake history",
            )  # fmt: skip

    emit(data, render)


@provider.command("earnings")
@click.option("--days", type=click.IntRange(1, 90), default=30, show_default=True, help="Days ending today (UTC).")
@click.option("--node", "node_id", type=click.IntRange(1), default=None, help="One node of yours (default: all).")
@json_option
def provider_earnings(days: int, node_id: int | None) -> None:
    """Per UTC day: rental income, $SPON rewards, floor top-ups, slashes and the total (USD)."""
    data = client().provider.earnings(days=days, node=node_id)

    def row(item: dict[str, Any], label: str) -> list[Any]:
        slash = f"-{item['slash_usd']}" if item["slash_usd"] is not None else f"{item['slash_spon']} base units"
        return [label, item["rental"], item["spon_tokens"], item["spon_usd"], item["floor"], slash, item["total"]]

    emit(
        data,
        lambda: table(
            ["day", "rental $", "$SPON", "$SPON in $", "floor $", "slashes $", "total $"],
            [row(item, item["day"]) for item in reversed(data["items"])] + [row(data["totals"], "total")],
            title=f"Earnings {data['first']} to {data['last']}" + (f", node {node_id}" if node_id else ""),
        ),
    )


# --- provider list prices, payouts, slashes -------------------------------------------------------------

UNIT_PRICES = {
    "cpu_per_core_month": "CPU core",
    "memory_per_gb_month": "GB of memory",
    "storage_per_gb_month": "GB of storage",
}


def _show_prices(data: dict[str, Any], *, every: bool = False) -> None:
    rows = [row for row in data["gpu_prices"] if every or row["price_per_hour"] is not None]
    table(
        ["gpu", "name", "kind", "your $/gpu-h", "fizz $/gpu-h"],
        [[r["gpu_model"], r["name"], r["kind"], r["price_per_hour"] or "not offered", r["fizz_price_per_hour"]]
         for r in rows],
        title=f"{data['offered']} of {len(data['gpu_prices'])} GPU models offered",
    )  # fmt: skip
    table(
        ["per month", "your $", "fizz $"],
        [[label, data[key]["price"], data[key]["fizz_price"]] for key, label in UNIT_PRICES.items()],
    )
    console.print(data["applies_to"], highlight=False, markup=False)
    if not every and len(rows) < len(data["gpu_prices"]):
        console.print("`sphnctl provider prices show --all`: every model with its Fizz price.", markup=False)


@provider.group("prices", invoke_without_command=True)
@json_option
@click.pass_context
def provider_prices(ctx: click.Context) -> None:
    """Your list prices for provider-mode nodes (default: show)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(provider_prices_show)


@provider_prices.command("show")
@click.option("--all", "every", is_flag=True, help="Every GPU model of the catalog, offered or not.")
@json_option
def provider_prices_show(every: bool) -> None:
    """USD per GPU-hour of the models you offer and per core-month and GB-month, with the Fizz
    prices for reference."""
    data = client().provider.prices()
    emit(data, lambda: _show_prices(dict(data), every=every))


@provider_prices.command("set")
@click.argument("gpu_model")
@click.argument("price")
@json_option
def provider_prices_set(gpu_model: str, price: str) -> None:
    """Offer GPU_MODEL (a slug: rtx4090, h100; see `sphnctl market`) at PRICE USD per GPU-hour,
    e.g. 0.35; every other price is kept."""
    if not price.strip():
        raise click.BadParameter("give a price, e.g. 0.35 (to stop offering the model: `unset`)", param_hint="PRICE")
    data = client().provider.price_set(gpu_model, price)
    emit(data, lambda: _show_prices(dict(data)))


@provider_prices.command("unset")
@click.argument("gpu_model")
@json_option
def provider_prices_unset(gpu_model: str) -> None:
    """Stop offering GPU_MODEL on provider-mode nodes registered from now on; every other price is kept."""
    data = client().provider.price_set(gpu_model, None)
    emit(data, lambda: _show_prices(dict(data)))


@provider_prices.command("set-units")
@click.option("--cpu", default=None, help="USD per core-month, e.g. 0.75.")
@click.option("--memory", default=None, help="USD per GB-month of memory, e.g. 0.10.")
@click.option("--storage", default=None, help="USD per GB-month of storage, e.g. 0.01.")
@json_option
def provider_prices_set_units(cpu: str | None, memory: str | None, storage: str | None) -> None:
    """The CPU, memory and storage prices given; the others and every GPU price are kept."""
    if cpu is None and memory is None and storage is None:
        raise click.UsageError("Nothing to change: give --cpu, --memory or --storage.")
    data = client().provider.unit_prices_set(
        cpu_per_core_month=cpu, memory_per_gb_month=memory, storage_per_gb_month=storage
    )
    emit(data, lambda: _show_prices(dict(data)))


def _payout_rows(rows: list[dict[str, Any]]) -> None:
    table(
        ["id", "requested", "amount $", "status", "chain", "token", "tx", "note"],
        [[p["id"], p["created_at"], p["amount"], p["status"], p["chain"], p["token_amount_text"] or p["token_symbol"],
          p["tx_hash"] or "", p["failure_reason"] or p["waiting_reason"] or
          ("waits for an admin" if p["status"] == "requested" else "")] for p in rows],
        title="Payouts",
    )  # fmt: skip


@provider.group("payouts", invoke_without_command=True)
@json_option
@click.pass_context
def provider_payouts(ctx: click.Context) -> None:
    """Payouts of your settled rental earnings to your linked payout address (default: list)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(provider_payouts_list)


@provider_payouts.command("list")
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
def provider_payouts_list(limit: int) -> None:
    """What you may request now, and your payout requests, newest first (--json: {balance, items})."""
    api = client()
    balance = api.provider.payout_balance()
    rows = list(islice(api.provider.payouts(page_size=min(limit, 100)), limit))
    data = {"balance": balance, "items": rows}

    def render() -> None:
        pairs(
            {**balance, "payout_address": balance["payout_address"] or "none: link one at /account/wallets/"},
            ["pending", "settled", "requested", "payable", "minimum", "approval_threshold", "payout_address"],
        )
        _payout_rows(rows)

    emit(data, render)


@provider_payouts.command("request")
@click.option("--amount", required=True, help="USD of settled earnings, e.g. 25 or 25.50.")
@click.option("--chain", "chain_key", required=True, help="An EVM chain's key (see `sphnctl chains`), e.g. base.")
@click.option("--token", default="native", show_default=True, help="native (the chain's coin) or SPON.")
@json_option
def provider_payouts_request(amount: str, chain_key: str, token: str) -> None:
    """Request a payout to your linked payout address. Up to the approval threshold it is approved
    at once; above it an admin approves it first. More than is payable, or no payout address: exit 1."""
    data = client().provider.payout_request(_usd_text(amount, option="--amount"), chain_key, token)

    def render() -> None:
        pairs(
            {**data, "needs_approval": "yes: an admin approves it first" if data["needs_approval"] else "no"},
            ["id", "amount", "status", "needs_approval", "chain_name", "token_symbol", "destination"],
        )

    emit(data, render)


def _appeal_text(appeal: dict[str, Any] | None, can_appeal: bool) -> str:
    if appeal is None:
        return "can appeal" if can_appeal else ""
    return appeal["status"] + (f", refund {appeal['refund_status']}" if appeal["refund_status"] else "")


def _show_slash(data: dict[str, Any]) -> None:
    pairs(
        {
            **data,
            "amount_spon": f"{data['amount_spon']} $SPON",
            "appeal": _appeal_text(data["appeal"], data["can_appeal"]),
        },
        ["id", "created_at", "status", "amount_spon", "amount_slashed_spon", "reason", "reference", "node_id",
         "address", "tx_hash", "tx_status", "failure_reason", "appeal", "url"],
    )  # fmt: skip
    appeal = data["appeal"]
    if appeal:
        console.print("Appeal", style="bold")
        pairs(appeal, ["status", "created_at", "text", "answer", "decided_at", "refund_status", "refund_amount_spon",
                       "refund_tx_hash", "refund_note"])  # fmt: skip
    evidence = data.get("evidence") or {}
    if evidence.get("lease_meter"):
        console.print(f"Evidence: lease on node {evidence['node_name']} (#{evidence['node_id']})", style="bold")
        pairs(evidence["lease_meter"], list(evidence["lease_meter"]))
    if evidence.get("node_events"):
        table(["at", "kind", "message"], [[e["at"], e["kind"], e["message"]] for e in evidence["node_events"]],
              title="Node events over the downtime")  # fmt: skip
    if evidence.get("failed_challenges"):
        table(
            ["challenge", "issued", "answered", "status", "why"],
            [[c["id"], c["issued_at"], c["answered_at"], c["status"], c["failure_reason"]]
             for c in evidence["failed_challenges"]],
            title=f"Failed challenges of the era {evidence['era_start']} to {evidence['era_end']}",
        )  # fmt: skip


@provider.group("slashes", invoke_without_command=True)
@json_option
@click.pass_context
def provider_slashes(ctx: click.Context) -> None:
    """Slashes of your stake, their evidence and your appeals (default: list)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(provider_slashes_list)


@provider_slashes.command("list")
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
def provider_slashes_list(limit: int) -> None:
    """Your slashes, newest first: amount, status, reason and appeal."""
    rows = list(islice(client().provider.slashes(page_size=min(limit, 100)), limit))
    emit(
        rows,
        lambda: table(
            ["id", "at", "$SPON", "status", "reason", "node", "appeal"],
            [[s["id"], s["created_at"], s["amount_spon"], s["status"], s["reason"], s["node_id"],
              _appeal_text(s["appeal"], s["can_appeal"])] for s in rows],
        ),
    )  # fmt: skip


@provider_slashes.command("get")
@click.argument("slash_id", type=click.IntRange(1))
@json_option
def provider_slashes_get(slash_id: int) -> None:
    """One of your slashes with the evidence it was decided on and its appeal."""
    data = client().provider.slash(slash_id)
    emit(data, lambda: _show_slash(dict(data)))


@provider_slashes.command("appeal")
@click.argument("slash_id", type=click.IntRange(1))
@click.option("--text", required=True, help="Why the slash is wrong (at most 2,000 characters); - reads stdin.")
@json_option
def provider_slashes_appeal(slash_id: int, text: str) -> None:
    """Appeal an applied slash, once; an admin upholds it (the stake comes back) or dismisses it.
    Not applied or already appealed: exit 1."""
    if text == "-":
        text = sys.stdin.read()
    data = client().provider.slash_appeal(slash_id, text)
    emit(data, lambda: _show_slash(dict(data)))


# --- the model store -----------------------------------------------------------------------------------


@cli.group()
def templates() -> None:
    """The model store: ready deployments (vLLM, Ollama, ComfyUI, JupyterLab, Ubuntu with SSH)."""


@templates.command("list")
@json_option
def templates_list() -> None:
    """Every template with the GPU memory it needs."""
    rows = client().templates.list()
    emit(
        rows,
        lambda: table(
            ["slug", "name", "category", "mode", "gpus", "min vram", "gpu models", "max $/h"],
            [[t["slug"], t["name"], t["category"], t["mode"], t["gpu_units"], t["min_vram_gb"],
              ", ".join(t["gpu_models"]) or "any", t["max_price_per_hour"]] for t in rows],
        ),
    )  # fmt: skip


@templates.command("get")
@click.argument("slug")
@json_option
def templates_get(slug: str) -> None:
    """One template: what it needs, the variables you fill in (-e NAME=VALUE) and its default spec."""
    data = client().templates.get(slug)

    def render() -> None:
        pairs(
            {**data, "gpu_models": ", ".join(data["gpu_models"]) or "any"},
            ["slug", "name", "description", "category", "mode", "gpu_units", "min_vram_gb", "gpu_models",
             "hf_model_default", "max_price_per_hour", "page_url"],
        )  # fmt: skip
        if data["env_vars"]:
            table(
                ["variable", "label", "required", "secret", "default"],
                [[v["name"], v["label"], v["required"], v["secret"], v["default"]] for v in data["env_vars"]],
            )
        console.print(Text(data["default_spec"]))

    emit(data, render)


def _env_pairs(values: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="-e/--env")
        env[name] = value
    return env


@templates.command("render")
@click.argument("slug")
@click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE", help="A variable's value (repeatable).")
@click.option("--hf-model", default=None, help="A Hugging Face model id to serve instead of the default.")
@click.option("--hf-params", default=None, help="The model's size in billions of parameters, if its id does not say.")
@click.option("--node", "node_id", type=click.IntRange(1), default=None, help="Pin to this node, not the cheapest.")
@click.option("--deploy", is_flag=True, help="Create the deployment from the pinned spec.")
@click.option("--wait", is_flag=True, help="With --deploy: show progress until it runs, fails or closes.")
@click.option("--wait-timeout", type=click.FloatRange(1), default=600, show_default=True, help="Seconds for --wait.")
@json_option
def templates_render(
    slug: str,
    env: tuple[str, ...],
    hf_model: str | None,
    hf_params: str | None,
    node_id: int | None,
    deploy: bool,
    wait: bool,
    wait_timeout: float,
) -> None:
    """Render SLUG into a spec pinned to the cheapest offer that fits, and print it (save it with
    `> spec.yaml`; the offer goes to stderr). With --deploy, create the deployment from it.

    Nothing fits: the unpinned spec is printed with the reason (exit 1 with --deploy)."""
    api = client()
    result = api.templates.render(
        slug, env=_env_pairs(env), hf_model=hf_model, hf_model_params=hf_params, node_id=node_id
    )
    offer = result["offer"]
    if not deploy:
        if _state["json"]:
            emit(result, lambda: None)
            return
        if offer:
            error_console.print(
                f"Cheapest fit: node {offer['node_id']} ({offer['gpu_model']}, {offer['region']}, {offer['mode']}) "
                f"at {offer['price_per_hour']} USD/h; the spec is pinned to it.",
                highlight=False,
                markup=False,
            )
        else:
            error_console.print(f"No offer fits: {result['message']}", highlight=False, markup=False)
        click.echo(result["pinned_spec"] or result["spec"], nl=False)
        return
    if result["pinned_spec"] is None:
        raise ApiError(f"Nothing to deploy: {result['message']}", extra={"render": result})
    created = api.deployments.create(result["pinned_spec"])
    message = f"Deployment {created['id']} created ({created['status']}) on node {offer['node_id']}: {created['url']}"
    _created(api, dict(created), message=message, wait=wait, wait_timeout=wait_timeout)


# --- top-ups -------------------------------------------------------------------------------------------


@cli.group()
def topup() -> None:
    """Add credits: by card (a link to pay) or in crypto (where and how to send)."""


def _usd_text(value: str, *, option: str) -> str:
    text = value.strip().lstrip("$")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = None
    if amount is None or not text.replace(".", "", 1).isdigit() or amount <= 0 or amount.as_tuple().exponent < -2:
        raise click.BadParameter(
            f"expected dollars with at most two decimals, e.g. 25 or 25.50, got {value!r}", param_hint=option
        )
    return f"{amount:.2f}"


@topup.command("card")
@click.option("--amount", required=True, help="USD, e.g. 25 or 25.50 ($5 to $10,000 at a time).")
@click.option("--intent", is_flag=True, help="Also start the Stripe PaymentIntent and print its client secret.")
@json_option
def topup_card(amount: str, intent: bool) -> None:
    """Print the link to pay AMOUNT by card on the billing page (credits arrive once Stripe confirms).

    With --intent, start the payment through the API instead and print the PaymentIntent's client
    secret and publishable key, for a script that confirms it with Stripe itself."""
    usd = _usd_text(amount, option="--amount")
    if intent:
        api = client()
    else:  # a link needs no key
        options = click.get_current_context().find_root().params
        api = Client(config.resolve(server=options.get("server"), api_key=None).server)
        click.get_current_context().call_on_close(api.close)
    data: dict[str, Any] = {"amount": usd, "url": api.billing.topup_page_url(usd)}
    if intent:
        data["payment_intent"] = api.billing.topup(usd)

    def render() -> None:
        console.print(f"Pay {usd} USD by card: open", highlight=False)
        console.print(Text(data["url"]))
        if intent:
            pairs(data["payment_intent"], ["topup_id", "amount", "client_secret", "publishable_key"])

    emit(data, render)


@topup.command("crypto")
@click.option("--chain", "chain_key", required=True, help="A chain's key (see `sphnctl chains`), e.g. base.")
@click.option("--token", default=None, help="One token (e.g. USDC); default: every token the chain takes.")
@click.option("--usd", default=None, help="Dollars to add: links to the amount to send, its QR code and wallet button.")
@json_option
def topup_crypto(chain_key: str, token: str | None, usd: str | None) -> None:
    """Where and how to send a deposit on CHAIN: the address, your reference, the tokens, rates,
    fees, the minimum and the confirmations before it is credited."""
    usd_text = _usd_text(usd, option="--usd") if usd is not None else None
    api = client()
    instructions = api.billing.deposit_instructions()
    chains_by_key = {item["key"]: item for item in instructions["chains"]}
    chain = chains_by_key.get(chain_key)
    if chain is None:
        choices = ", ".join(sorted(chains_by_key)) or "none are enabled"
        raise ValidationError(
            f"Unknown chain {chain_key!r}; the chains that take deposits: {choices}.",
            fields=[{"field": "chain", "message": f"one of: {choices}"}],
        )
    tokens = chain["tokens"]
    if token is not None:
        tokens = [item for item in tokens if item["symbol"].lower() == token.lower()]
        if not tokens:
            choices = ", ".join(item["symbol"] for item in chain["tokens"])
            raise ValidationError(
                f"{chain['name']} does not take {token!r}; it takes {choices}.",
                fields=[{"field": "token", "message": f"one of: {choices}"}],
            )
    evm = chain["kind"] == "evm"
    data = {
        "reference": instructions["reference"],
        "chain": chain["key"],
        "chain_name": chain["name"],
        "chain_id": chain["chain_id"],
        "kind": chain["kind"],
        "pay_to": chain["receiver_address"] if evm else chain["treasury_address"],
        "how": (
            "Call deposit(reference) on the receiver with the native amount, or approve the token and call "
            "depositToken(token, amount, reference). A plain transfer is refused."
            if evm
            else "Send SOL to the treasury address with your reference in a Memo."
        ),
        "finality": chain["finality"],
        "minimum_usd": chain["minimum_usd"],
        "tokens": [
            {**item, **({"page_url": api.billing.crypto_page_url(chain=chain["key"], token=item["symbol"],
                                                                  usd=usd_text)} if usd_text else {})}
            for item in tokens
        ],
        "usd": usd_text,
    }  # fmt: skip

    def render() -> None:
        pairs(data, ["chain_name", "chain_id", "pay_to", "reference", "how", "finality", "minimum_usd"])
        table(
            ["token", "contract", "fee", "USD per token", "note"],
            [[t["symbol"], t["address"] or "(native)", f"{t['fee_bps'] / 100:g}%", t["rate_usd"] or "",
              t["no_quote_reason"]] for t in data["tokens"]],
        )  # fmt: skip
        for item in data["tokens"]:
            if item.get("page_url"):
                console.print(f"{item['symbol']} for {usd_text} USD (amount, QR code, wallet):", highlight=False)
                console.print(Text(item["page_url"]))

    emit(data, render)


# --- low-balance alerts and auto-reload ----------------------------------------------------------------


def _show_alerts(data: dict[str, Any]) -> None:
    pairs(
        {
            **data,
            "thresholds": ", ".join(data["thresholds"]) or "none",
            "email": f"{data['email']} ({'on' if data['email_enabled'] else 'off'})",
            "webhook_url": data["webhook_url"] or "none",
            "signing secret": "set (shown once, when made)" if data["webhook_secret_set"] else "none",
        },
        ["thresholds", "email", "webhook_url", "signing secret", "page_url"],
    )
    if data.get("webhook_secret"):
        console.print("Signing secret (copy it now, it is not shown again):", style="bold", highlight=False)
        click.echo(data["webhook_secret"])  # never wrapped: copied as it is
    if data["events"]:
        table(
            ["at", "event", "threshold $", "available $", "channel", "status", "attempts", "error"],
            [[e["created_at"], e["id"], e["threshold"], e["available"], d["channel"], d["status"], d["attempts"],
              d["last_error"] or (f"HTTP {d['response_status']}" if d["response_status"] else "")]
             for e in data["events"] for d in (e["deliveries"] or [{"channel": "", "status": "", "attempts": "",
                                                                      "last_error": "", "response_status": None}])],
            title="Latest alerts",
        )  # fmt: skip


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def alerts(ctx: click.Context) -> None:
    """Low-balance alerts: thresholds, e-mail, a signed webhook, and what was sent (default: show)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(alerts_show)


@alerts.command("show")
@json_option
def alerts_show() -> None:
    """Thresholds, e-mail, the webhook (never its secret) and the latest alerts with each delivery."""
    data = client().billing.alerts()
    emit(data, lambda: _show_alerts(dict(data)))


@alerts.command("set")
@click.option("--threshold", "thresholds", multiple=True, help="USD; repeat for several (at most 5). Replaces them.")
@click.option("--no-thresholds", is_flag=True, help="Remove every threshold (no alerts).")
@click.option("--email/--no-email", "email", default=None, help="Alerts by e-mail to your account's address.")
@click.option("--webhook", default=None, metavar="URL", help="https URL that receives signed JSON alerts.")
@click.option("--no-webhook", is_flag=True, help="Remove the webhook and its secret.")
@json_option
def alerts_set(
    thresholds: tuple[str, ...], no_thresholds: bool, email: bool | None, webhook: str | None, no_webhook: bool
) -> None:
    """Change the alerts; what is not given stays as it is. The balance is checked at once. A first
    webhook gets a signing secret, printed once."""
    if thresholds and no_thresholds:
        raise click.UsageError("Give --threshold or --no-thresholds, not both.")
    if webhook is not None and no_webhook:
        raise click.UsageError("Give --webhook or --no-webhook, not both.")
    if not (thresholds or no_thresholds or email is not None or webhook is not None or no_webhook):
        raise click.UsageError("Nothing to change: give --threshold, --email/--no-email or --webhook.")
    data = client().billing.alerts_update(
        thresholds=[] if no_thresholds else [_usd_text(t, option="--threshold") for t in thresholds] or None,
        email_enabled=email,
        webhook_url="" if no_webhook else webhook,
    )
    emit(data, lambda: _show_alerts(dict(data)))


@alerts.command("rotate-secret")
@json_option
def alerts_rotate_secret() -> None:
    """A new webhook signing secret, printed once; the old one signs nothing more."""
    data = client().billing.alerts_rotate_secret()
    emit(data, lambda: _show_alerts(dict(data)))


def _show_autoreload(data: dict[str, Any]) -> None:
    pairs(
        {
            **data,
            "enabled": "on" if data["enabled"] else "off",
            "card": data["card_label"] or "none saved",
            "minimum amount": data["minimum_amount"],
        },
        ["enabled", "threshold", "amount", "minimum amount", "card"],
    )
    if not data["card_saved"]:
        console.print("Saving a card needs a browser (Stripe.js): open", highlight=False)
        console.print(Text(data["card_setup_url"]))
    if data.get("attempt"):
        attempt = data["attempt"]
        console.print(
            f"Reloaded at once: {attempt['status']} ({attempt['amount']} USD) {attempt['failure_message']}".rstrip(),
            highlight=False,
            markup=False,
        )
    if data["attempts"]:
        table(
            ["id", "at", "amount $", "status", "reason", "failure"],
            [[a["id"], a["created_at"], a["amount"], a["status"], a["reason"], a["failure_message"]]
             for a in data["attempts"]],
            title="Latest reloads",
        )  # fmt: skip


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def autoreload(ctx: click.Context) -> None:
    """Card auto-reload: top up from a saved card before credits run out (default: show)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(autoreload_show)


@autoreload.command("show")
@json_option
def autoreload_show() -> None:
    """On/off, threshold, amount, the saved card (or where to save one) and the latest reloads."""
    data = client().billing.autoreload()
    emit(data, lambda: _show_autoreload(dict(data)))


@autoreload.command("set")
@click.option("--enable/--disable", "enabled", default=None, help="Turn it on (needs a saved card) or off.")
@click.option("--threshold", default=None, help="USD: reload when available credits fall below this.")
@click.option("--amount", default=None, help="USD added each time (at least $20).")
@json_option
def autoreload_set(enabled: bool | None, threshold: str | None, amount: str | None) -> None:
    """Change auto-reload; what is not given stays as it is. Enabled with the credits already below
    the threshold, the card is charged at once."""
    if enabled is None and threshold is None and amount is None:
        raise click.UsageError("Nothing to change: give --enable/--disable, --threshold or --amount.")
    data = client().billing.autoreload_update(
        enabled=enabled,
        threshold=_usd_text(threshold, option="--threshold") if threshold is not None else None,
        amount=_usd_text(amount, option="--amount") if amount is not None else None,
    )
    emit(data, lambda: _show_autoreload(dict(data)))
    attempt = data.get("attempt")
    if attempt and attempt["status"] == "failed":
        click.get_current_context().exit(EXIT_CODES["error"])


@autoreload.command("remove-card")
@json_option
def autoreload_remove_card() -> None:
    """Forget the saved card; auto-reload turns off."""
    data = client().billing.autoreload_card_remove()
    emit(data, lambda: _show_autoreload(dict(data)))


# --- monthly statements --------------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def statements(ctx: click.Context) -> None:
    """Monthly statements: what came in, what was charged, opening and closing balance (default: list)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(statements_list)


@statements.command("list")
@json_option
def statements_list() -> None:
    """Every month since your first, newest first, with its totals (USD)."""
    rows = client().billing.statements()
    emit(
        rows,
        lambda: table(
            ["period", "number", "top-ups $", "usage $", "other $", "net $", ""],
            [[m["period"], m["number"], m["topups"], m["usage"], m["other"], m["net"],
              "running" if m["current"] else ""] for m in rows],
            title="Statements",
        ),
    )  # fmt: skip


def _period_argument(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("give a month written YYYY-MM, e.g. 2026-03")
    return value.strip()


def _show_statement(data: dict[str, Any]) -> None:
    pairs(
        {
            **data,
            "month": data["name"],
            "period": f"{data['period_start']} to {data['period_end']}",
            "status": "final" if data["is_final"] else "running (not final)",
        },
        ["number", "month", "period", "status", "opening", "credits", "charges", "total", "closing"],
    )
    for group in data["groups"]:
        table(
            ["date", "description", "reference", "count", "amount $"],
            [[line["date"], line["description"], line["reference"], line["count"], line["amount"]]
             for line in group["lines"]],
            title=f"{group['label']} ({group['total']} USD)",
        )  # fmt: skip
    if not data["groups"]:
        console.print(Text("No transactions this month.", style="dim"))
    console.print(Text(f"Printable: {data['page_url']}"))


@statements.command("get")
@click.argument("period", callback=_period_argument, metavar="YYYY-MM")
@json_option
def statements_get(period: str) -> None:
    """One month's statement: opening balance, lines by type, closing balance (USD)."""
    data = client().billing.statement(period)
    emit(data, lambda: _show_statement(dict(data)))


# --- the node agent ------------------------------------------------------------------------------------


@cli.command(
    "fizz",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fizz(args: tuple[str, ...]) -> None:
    """The fizz node agent's commands (`sphnctl fizz start|status|logs|stop|version …`; `sphnctl fizz
    --help` for theirs). Its arguments pass through as given; its exit code is sphnctl's."""
    from spheron_sdk.fizz.cli import main as fizz_main

    try:
        code = fizz_main(list(args))
    except SystemExit as exc:  # argparse: --help, or a usage error (2)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_CODES["error"])
    click.get_current_context().exit(code)
