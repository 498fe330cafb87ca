"""`sphnctl`: the Spheron Web API from a terminal (Click for the commands, Rich for the tables).

Every command takes --json: it then prints the API's JSON (one document; `deployment logs` prints
one JSON object per line) and, on an error, `{"error": {type, status, message, fields, extra}}` on
stdout. Exit codes, which scripts can rely on:

    0  ok
    1  any other error (a deployment that failed while --wait, a config file that cannot be read)
    2  usage: bad arguments or input, including a query, sort or spec the server refuses (400/422)
    3  not found (404: no such object, or another user's)
    4  auth: no API key, a wrong or revoked one (401), or not allowed (403)
    5  insufficient funds (402; a --dry-run whose hold your credits do not cover)
    6  network or server: unreachable, dropped, 5xx, or still rate limited (429) after retries
"""

from __future__ import annotations

import sys

import click

from spheron_sdk.cli.commands import EXIT_CODES, cli, exit_code_for, print_error
from spheron_sdk.cli.config import ConfigError
from spheron_sdk.errors import ApiError
from spheron_sdk.offer_query import QueryError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> None:
    try:
        # Without standalone mode Click returns ctx.exit()'s code instead of exiting.
        code = cli.main(args=argv, prog_name="sphnctl", standalone_mode=False)
    except click.ClickException as exc:  # UsageError and friends: exit 2; others 1
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_ERROR)
    except ApiError as exc:
        print_error(exc.to_dict())
        sys.exit(exit_code_for(exc))
    except QueryError as exc:
        print_error({"type": "QueryError", "status": None, "message": str(exc), "fields": [], "extra": {}})
        sys.exit(EXIT_USAGE)
    except (ConfigError, TimeoutError) as exc:
        print_error({"type": type(exc).__name__, "status": None, "message": str(exc), "fields": [], "extra": {}})
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


__all__ = ["EXIT_CODES", "main"]
