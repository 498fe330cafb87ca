"""sphnctl's human output helpers: API times in table cells, and the on-chain line of `verify`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from spheron_sdk.cli.commands import cell, on_chain_line, table


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2026-12-05T22:26:45.474700+00:00", "2026-12-05 22:26:45"),
        ("2026-12-05T22:26:45+00:00", "2026-12-05 22:26:45"),
        ("2026-12-05T22:26:45.1Z", "2026-12-05 22:26:45"),
        # Not a UTC API time: shown as it is (an offset elsewhere would be a different moment).
        ("2026-12-05T22:26:45+02:00", "2026-12-05T22:26:45+02:00"),
        ("2026-12-05", "2026-12-05"),
        ("fzt_Y0zdgWi8", "fzt_Y0zdgWi8"),
        ("[bold]x[/]", "[bold]x[/]"),  # never markup
        (None, ""),
        (42, "42"),
    ],
)
def test_a_cell_shows_api_times_to_the_second_and_everything_else_as_it_is(value, shown):
    assert cell(value).plain == shown


def test_the_on_chain_line_says_what_the_registry_holds():
    chain = {"registry": "0x0165878A594ca255338adfa4d48449f69242Eb8F", "chain_id": 8453, "lease_id": 7}
    same = on_chain_line({**chain, "matches": True, "problem": None})
    assert same == (
        "on chain: the same commitment is recorded "
        "(LeaseRegistry 0x0165878A594ca255338adfa4d48449f69242Eb8F on chain 8453, lease 7)"
    )
    missing = on_chain_line({**chain, "matches": False, "problem": "no commitment is recorded on chain for this lease"})
    assert missing.startswith("on chain: no commitment is recorded on chain for this lease (LeaseRegistry")


def test_an_empty_table_says_so_instead_of_printing_a_bare_header(capsys):
    table(["id", "amount $"], [], title="Payouts")
    table(["id", "at"], [])
    assert capsys.readouterr().out.splitlines() == ["Payouts: none.", "None yet."]
    table(["id"], [[7]])
    assert "┃ id ┃" in capsys.readouterr().out


def test_shell_completion_as_the_readme_says():
    """README: `eval "$(_SPHNCTL_COMPLETE=bash_source sphnctl)"`; the script then asks sphnctl itself."""
    sphnctl = str(Path(sys.executable).with_name("sphnctl"))
    script = subprocess.run(
        [sphnctl], env={**os.environ, "_SPHNCTL_COMPLETE": "bash_source"}, capture_output=True, text=True, timeout=60
    )
    assert script.returncode == 0 and "complete -o nosort -F _sphnctl_completion sphnctl" in script.stdout
    env = {**os.environ, "_SPHNCTL_COMPLETE": "bash_complete", "COMP_WORDS": "sphnctl provider to", "COMP_CWORD": "2"}
    answer = subprocess.run([sphnctl], env=env, capture_output=True, text=True, timeout=60)
    assert answer.stdout.splitlines() == ["plain,tokens"]
