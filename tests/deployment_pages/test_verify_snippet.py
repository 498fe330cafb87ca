"""The deployment page's "Verify it" snippet runs as shown, with only what the SDK installs.

The snippet is taken from the rendered page, given a real API key in place of `sph_…`, and run by
the project's Python in a subprocess against a live server. Imports are checked against the SDK's
declared dependencies, and `requests` (which the project's venv happens to have) is made
unimportable, so a snippet that needs anything more fails here instead of on a renter's machine.
"""

from __future__ import annotations

import ast
import html
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from django.test import Client

from accounts.api_keys import api_key_create
from tests.deployment_pages.conftest import create_and_match

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = re.compile(r'<pre class="command" data-testid="verify-snippet">(.*?)</pre>', re.S)
# Run before the snippet: the SDK's dependencies only, so an import of anything else fails.
NO_EXTRAS = "import sys\nfor name in ('requests', 'urllib3', 'aiohttp'):\n    sys.modules[name] = None\n"


def _sdk_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    return names | {"spheron_sdk"}


def _rendered_snippet(client: Client, deployment_id: int, host: str) -> str:
    page = client.get(f"/deployments/{deployment_id}/", HTTP_HOST=host).content.decode()
    found = SNIPPET.search(page)
    assert found, "the deployment page shows no verify snippet"
    return html.unescape(found.group(1))


def test_the_verify_snippet_imports_only_the_sdk_and_its_dependencies(owner_client, owner, market):
    deployment, _lease = create_and_match(owner)
    snippet = _rendered_snippet(owner_client, deployment.id, "testserver")
    imported = set()
    for node in ast.walk(ast.parse(snippet)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    extra = {name for name in imported if name not in sys.stdlib_module_names} - _sdk_distributions()
    assert not extra, f"the snippet needs {extra}, which `pip install` of the SDK does not bring"
    assert "requests" not in snippet


@pytest.mark.django_db(transaction=True)
def test_the_verify_snippet_as_rendered_verifies_the_live_match_proof(live_server, owner, market, settings):
    host = live_server.url.removeprefix("http://")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, host.split(":")[0]]
    deployment, _lease = create_and_match(owner)
    client = Client()
    client.force_login(owner)
    snippet = _rendered_snippet(client, deployment.id, host)
    assert f'url = "{live_server.url}/api/v1/deployments/{deployment.id}/match-proof"' in snippet
    _key, raw_key = api_key_create(user=owner, label="verify snippet")
    assert snippet.count("sph_…") == 1  # the one thing a renter fills in
    program = NO_EXTRAS + snippet.replace("sph_…", raw_key) + '\nprint("verified")\n'

    run = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # not the project: only what is installed can be imported
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "verified"

    # And it does check something: a proof with another winner fails the same snippet.
    other = program.replace("assert verify_match(proof)", 'proof["winner"] = -1\nassert verify_match(proof)')
    failed = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", other], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert failed.returncode != 0 and "AssertionError" in failed.stderr
