"""`fizz`: start / status / logs / stop / version.

Exit codes: 0 ok, 1 a refusal or error explained on stderr, 2 bad arguments (argparse), 3 from
`status` when the agent is not running (as LSB init scripts do).
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import platform
import signal
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from spheron_sdk import __version__
from spheron_sdk.fizz.config import ConfigDir, ConfigError, is_agent_process, normalize_server

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CliError(Exception):
    """Shown as `fizz: <message>` with exit code 1."""


def _server_url(value: str) -> str:
    try:
        return normalize_server(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {value!r}") from None


def _price(value: str) -> str:
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected a decimal number of USD, got {value!r}") from None
    if not price.is_finite() or price <= 0:
        raise argparse.ArgumentTypeError("the price must be a positive number")
    return str(price)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def _non_negative_int(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help="holds node.json, agent.pid, state.json, agent.log (default: $FIZZ_HOME or the per-user config dir)",
    )
    parser = argparse.ArgumentParser(prog="fizz", description="Spheron fizz node agent: offer this machine's compute.")
    parser.add_argument("--version", action="version", version=f"fizz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    start = sub.add_parser("start", parents=[common], help="register (first time) and run the agent in the foreground")
    start.add_argument("--server", type=_server_url, help="the Spheron server, e.g. https://spheron.example")
    start.add_argument(
        "--token",
        default=os.environ.get("FIZZ_TOKEN"),
        help="node token (fzt_...) from the dashboard; only needed the first time (or set FIZZ_TOKEN)",
    )
    start.add_argument("--region", help="market region for this node (default: your default region)")
    start.add_argument("--runtime", choices=("process", "docker"), default="process", help="how to run leases")
    start.add_argument("--price-per-hour", type=_price, help="USD per GPU-hour, e.g. 0.30 (default: the market's)")
    start.add_argument("--storage-path", type=Path, help="where workloads keep data (default: the config dir)")

    status = sub.add_parser("status", parents=[common], help="is the agent running, and how is it doing")
    status.add_argument("--json", action="store_true", help="print the state as JSON")

    logs = sub.add_parser("logs", parents=[common], help="print the agent's log")
    logs.add_argument("-n", "--lines", type=_non_negative_int, default=50, help="how many lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    stop = sub.add_parser("stop", parents=[common], help="stop the running agent (SIGTERM) and wait for it")
    stop.add_argument("--timeout", type=_positive_float, default=30.0, help="seconds to wait (default 30)")

    version = sub.add_parser("version", help="print the agent version")
    version.add_argument("--json", action="store_true", help="with the Python version and platform")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"start": cmd_start, "status": cmd_status, "logs": cmd_logs, "stop": cmd_stop, "version": cmd_version}
    try:
        return handlers[args.command](args, parser)
    except (CliError, ConfigError) as exc:
        print(f"fizz: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


# version ---------------------------------------------------------------------------------------


def cmd_version(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.json:
        info = {
            "version": __version__,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "system": platform.system(),
            "arch": platform.machine(),
        }
        print(json.dumps(info, indent=2))
    else:
        print(f"fizz {__version__}")
    return EXIT_OK


# start -----------------------------------------------------------------------------------------


def setup_logging(log_file: Path) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    formatter = logging.Formatter(LOG_FORMAT)
    formatter.converter = time.gmtime  # UTC, like the server's timestamps
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if not log_file.exists():
        log_file.touch(mode=0o600)
    file_handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=10 * 1024 * 1024, backupCount=3)
    file_handler.setFormatter(formatter)
    root.handlers[:] = [stderr, file_handler]
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise


def cmd_start(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = ConfigDir(args.config_dir)
    node = config.load_node()
    server = args.server or (node.server if node else None)
    if server is None:
        parser.error("--server is required the first time")
    if node is not None and normalize_server(node.server) != server:
        raise CliError(
            f"{config.node_file} belongs to node {node.node_id} on {node.server}, not {server}; "
            "use another --config-dir for a second server, or delete node.json to move this machine"
        )
    if node is None and not args.token:
        parser.error("--token is required the first time (or set FIZZ_TOKEN)")
    running = config.running_pid()
    if running is not None:
        raise CliError(f"the agent is already running for {config.path} (pid {running})")

    try:
        config.ensure()
        setup_logging(config.log_file)
    except OSError as exc:
        raise CliError(f"cannot use the config dir {config.path}: {exc.strerror or exc}") from None
    log = logging.getLogger("fizz")
    if node is not None and (args.token or args.region or args.price_per_hour):
        log.info("already registered as node %d: --token/--region/--price-per-hour are not used", node.node_id)
    if server.startswith("http://") and not _is_local(server):
        log.warning("%s is plain http: the node secret travels unencrypted", server)

    # Imported here so `fizz version/status/logs/stop` stay fast (no httpx, no hardware probing).
    from spheron_sdk.fizz import hardware
    from spheron_sdk.fizz.agent import Agent, AgentOptions
    from spheron_sdk.fizz.runtime import ProcessRuntime, Runtime, RuntimeUnavailable

    gpu_indices = [gpu.index for gpu in hardware.query_nvidia_gpus()]
    runtime: Runtime
    if args.runtime == "docker":
        from spheron_sdk.fizz.docker_runtime import DockerRuntime

        runtime = DockerRuntime(gpu_indices)
    else:
        runtime = ProcessRuntime(config.work_dir, gpu_indices)
    try:
        runtime.check()
    except RuntimeUnavailable as exc:
        log.error("%s", exc)  # to agent.log as well, for whoever reads `fizz logs` later
        return EXIT_ERROR

    options = AgentOptions(
        server=server,
        config=config,
        storage_path=(args.storage_path or config.path).expanduser(),
        token=args.token,
        region=args.region,
        price_per_hour=args.price_per_hour,
    )
    agent = Agent(options, runtime)

    def on_signal(signum: int, _frame: Any) -> None:
        agent.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    config.write_pid()
    log.info("fizz %s starting (pid %d, %s runtime, config %s)", __version__, os.getpid(), runtime.name, config.path)
    try:
        code = agent.run()
    except Exception:  # a bug: keep the traceback in agent.log, and still clean up
        log.exception("the agent crashed")
        code = EXIT_ERROR
    finally:
        config.remove_pid()
    log.info("fizz agent exited (%d)", code)
    return code


def _is_local(server: str) -> bool:
    host = server.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


# status ----------------------------------------------------------------------------------------


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "never"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    return f"{timestamp} ({seconds} s ago)"


def cmd_status(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = ConfigDir(args.config_dir)
    pid = config.running_pid()
    state = config.load_state() or {}
    node = config.load_node()
    report = {
        "running": pid is not None,
        "pid": pid,
        "config_dir": str(config.path),
        "node_id": node.node_id if node else state.get("node_id"),
        "server": node.server if node else state.get("server"),
        "agent_state": state.get("agent_state") if pid is not None else "stopped",
        "status": state.get("status"),  # as the server last reported it
        "maintenance": state.get("maintenance", False),
        "last_heartbeat_at": state.get("last_heartbeat_at"),
        "heartbeat_interval_seconds": state.get("heartbeat_interval_seconds"),
        "last_error": state.get("last_error"),
        "runtime": state.get("runtime"),
        "leases": state.get("leases", []) if pid is not None else [],
        "agent_version": state.get("agent_version"),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"agent:      {f'running (pid {pid})' if pid else 'not running'}")
        if report["node_id"] is not None:
            print(f"node:       {report['node_id']} on {report['server']}")
        else:
            print(f"node:       not registered ({config.path})")
        if state:
            print(f"status:     {report['status']}{' (maintenance)' if report['maintenance'] else ''} (server)")
            print(f"heartbeat:  {_age(report['last_heartbeat_at'])}")
            if report["last_error"]:
                print(f"last error: {report['last_error']}")
        leases = ", ".join(f"{lease['lease_id']} ({lease['state']})" for lease in report["leases"]) or "none"
        print(f"leases:     {leases}")
    return EXIT_OK if pid is not None else EXIT_NOT_RUNNING


# logs ------------------------------------------------------------------------------------------


def tail_lines(path: Path, count: int, block: int = 64 * 1024) -> tuple[list[str], int]:
    """The last `count` lines of a file and the offset they end at.

    Reads backwards, so a large log costs little; the offset lets `-f` go on from exactly there
    without losing lines written in between.
    """
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = position = handle.tell()
        data = b""
        while count and position > 0 and data.count(b"\n") <= count:
            start = max(0, position - block)
            handle.seek(start)
            data = handle.read(position - start) + data
            position = start
    lines = data.decode("utf-8", errors="replace").splitlines()
    return (lines[-count:] if count else []), end


def cmd_logs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = ConfigDir(args.config_dir)
    path = config.log_file
    if not path.exists():
        raise CliError(f"no log yet at {path} (the agent has not been started with this config dir)")
    lines, offset = tail_lines(path, args.lines)
    for line in lines:
        print(line)
    sys.stdout.flush()
    if not args.follow:
        return EXIT_OK
    handle = path.open("rb")
    handle.seek(offset)
    inode = os.fstat(handle.fileno()).st_ino
    try:
        while True:
            chunk = handle.readline()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
                continue
            time.sleep(0.25)
            # Follow across rotation (agent.log renamed to agent.log.1) and truncation.
            try:
                current = path.stat()
            except FileNotFoundError:
                continue
            if current.st_ino != inode or current.st_size < handle.tell():
                if current.st_ino != inode:  # what was written to the old file before the rename
                    sys.stdout.write(handle.read().decode("utf-8", errors="replace"))
                    sys.stdout.flush()
                handle.close()
                handle = path.open("rb")
                inode = os.fstat(handle.fileno()).st_ino
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        handle.close()


# stop ------------------------------------------------------------------------------------------


def cmd_stop(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = ConfigDir(args.config_dir)
    pid = config.running_pid()
    if pid is None:
        stale = config.read_pid()
        extra = f" (removed a stale pid file for pid {stale})" if stale is not None else ""
        if stale is not None:
            config.pid_file.unlink(missing_ok=True)
        print(f"fizz: the agent is not running for {config.path}{extra}", file=sys.stderr)
        return EXIT_OK
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print(f"fizz: the agent (pid {pid}) had already exited", file=sys.stderr)
        return EXIT_OK
    except PermissionError:
        raise CliError(f"not allowed to signal pid {pid} (run as the user that started the agent)") from None
    print(f"stopping the agent (pid {pid})...", file=sys.stderr)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not is_agent_process(pid):
            print("stopped", file=sys.stderr)
            return EXIT_OK
        time.sleep(0.1)
    raise CliError(f"the agent (pid {pid}) did not exit within {args.timeout:g} s; it may still be stopping")
