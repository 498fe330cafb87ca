"""/fizz/: the agent's install page, the install script and the wheel the server builds from sdk/."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from providers import fizz_dist

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_dist_dir(settings, tmp_path):
    """Each test builds into its own folder, so a cached build from another test proves nothing."""
    settings.VAR_DIR = tmp_path / "var"


def _wheel_url(script: str) -> str:
    return re.search(r"^WHEEL_URL=(\S+)$", script, re.M).group(1)


def test_install_page_gives_the_one_line_install_the_requirements_and_the_start_command(client):
    response = client.get("/fizz/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<title>Install the agent" in page
    assert "curl -fsSL http://testserver/fizz/install.sh | sh" in page
    assert "Python 3.11" in page and "Linux or macOS" in page and "Docker" in page
    assert "fizz start --server http://testserver --token &lt;your token&gt;" in page
    assert 'href="/provider/tokens/"' in page
    assert "spheron_sdk-0.1.0-py3-none-any.whl" in page


def test_install_script_is_plain_text_and_names_this_server_and_its_wheel(client):
    response = client.get("/fizz/install.sh")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    script = response.content.decode()
    assert script.startswith("#!/bin/sh\n")
    assert "SITE=http://testserver\n" in script
    assert _wheel_url(script) == "http://testserver/fizz/spheron_sdk-0.1.0-py3-none-any.whl"
    assert "fizz start --server $SITE --token <your token>" in script
    assert "TOKENS_URL=http://testserver/provider/tokens/\n" in script
    # The last line runs everything: a download cut short runs nothing.
    assert script.rstrip().splitlines()[-1] == 'main "$@"'
    # Django's template syntax left nothing behind and escaped nothing.
    assert "{%" not in script and "{{" not in script and "&quot;" not in script and "&#x27;" not in script


def test_install_script_is_valid_posix_sh(client, tmp_path):
    dash = shutil.which("dash") or shutil.which("sh")
    script = tmp_path / "install.sh"
    script.write_bytes(client.get("/fizz/install.sh").content)
    result = subprocess.run([dash, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_install_script_uses_the_https_address_behind_a_tls_proxy(client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["spheron.example"]
    script = client.get("/fizz/install.sh", HTTP_HOST="spheron.example", HTTP_X_FORWARDED_PROTO="https")
    text = script.content.decode()
    assert "SITE=https://spheron.example\n" in text
    assert _wheel_url(text) == "https://spheron.example/fizz/spheron_sdk-0.1.0-py3-none-any.whl"


def test_install_script_refuses_a_host_that_is_not_allowed(client):
    response = client.get("/fizz/install.sh", HTTP_HOST="evil.example")
    assert response.status_code == 400


def test_install_script_exits_with_a_clear_error_without_python(client, tmp_path):
    script = tmp_path / "install.sh"
    script.write_bytes(client.get("/fizz/install.sh").content)
    bin_dir = tmp_path / "bin"  # a PATH with the basics the script uses, and no python3
    bin_dir.mkdir()
    for tool in ("uname", "mkdir", "mktemp", "rm"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = subprocess.run(
        ["/bin/sh", str(script)],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "python3 not found" in result.stderr and "Python 3.11 or newer" in result.stderr


def test_install_script_refuses_a_python_older_than_3_11(client, tmp_path):
    script = tmp_path / "install.sh"
    script.write_bytes(client.get("/fizz/install.sh").content)
    old_python = tmp_path / "python3.9"
    old_python.write_text('#!/bin/sh\ncase "$1" in -V) echo "Python 3.9.2" ;; *) exit 1 ;; esac\n')
    old_python.chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", str(script)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "FIZZ_PYTHON": str(old_python)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "needs Python 3.11 or newer" in result.stderr and "Python 3.9.2" in result.stderr
    assert not (tmp_path / "home" / ".spheron-fizz").exists()


def test_install_script_says_how_to_get_the_venv_module_when_it_is_missing(client, tmp_path):
    script = tmp_path / "install.sh"
    script.write_bytes(client.get("/fizz/install.sh").content)
    # Debian's python3 without python3-venv: a recent Python that cannot import ensurepip.
    python = tmp_path / "python3"
    python.write_text('#!/bin/sh\ncase "$2" in *ensurepip*) exit 1 ;; esac\nexit 0\n')
    python.chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", str(script)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "FIZZ_PYTHON": str(python)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "venv module is missing" in result.stderr and "sudo apt-get install python3-venv" in result.stderr
    assert not (tmp_path / "home" / ".spheron-fizz" / "venv").exists()


def test_wheel_is_served_with_a_name_pip_accepts_and_the_sha256_the_script_checks(client):
    script = client.get("/fizz/install.sh").content.decode()
    response = client.get("/fizz/spheron_sdk-0.1.0-py3-none-any.whl")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert 'filename="spheron_sdk-0.1.0-py3-none-any.whl"' in response["Content-Disposition"]
    data = b"".join(response.streaming_content)
    assert f"WHEEL_SHA256={hashlib.sha256(data).hexdigest()}\n" in script

    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        names = set(wheel.namelist())
        assert {"spheron_sdk/fizz/cli.py", "spheron_sdk/matching.py"} <= names
        metadata = wheel.read("spheron_sdk-0.1.0.dist-info/METADATA").decode()
        entry_points = wheel.read("spheron_sdk-0.1.0.dist-info/entry_points.txt").decode()
    assert "Name: spheron-sdk\n" in metadata and "Version: 0.1.0\n" in metadata
    assert "Requires-Dist: httpx==0.28.1\n" in metadata and "Requires-Dist: psutil==7.2.2\n" in metadata
    assert 'Requires-Dist: docker==7.2.0; extra == "docker"' in metadata
    assert "fizz = spheron_sdk.fizz.cli:main" in entry_points
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def test_an_unknown_wheel_name_is_404(client):
    assert client.get("/fizz/spheron_sdk-9.9.9-py3-none-any.whl").status_code == 404
    assert client.get("/fizz/other-0.1.0-py3-none-any.whl").status_code == 404


def test_pip_installs_the_served_wheel_and_its_fizz_runs(client, tmp_path):
    """pip itself accepts the hand-built wheel (RECORD, METADATA, entry point); no index needed
    with --no-deps, and the dependencies are already in this test's environment."""
    path = tmp_path / "spheron_sdk-0.1.0-py3-none-any.whl"
    path.write_bytes(b"".join(client.get(f"/fizz/{path.name}").streaming_content))
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(path),
        ],
        check=True,
        timeout=120,
    )
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from spheron_sdk.fizz.cli import main; sys.exit(main(['version']))"],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repo, whose sdk/ would shadow the installed copy
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fizz 0.1.0"
    import spheron_sdk

    assert (target / "spheron_sdk" / "__init__.py").read_text() == Path(spheron_sdk.__file__).read_text()


def test_a_changed_sdk_gives_a_new_wheel(settings, tmp_path):
    sdk = tmp_path / "sdk"
    shutil.copytree(
        fizz_dist.sdk_dir(), sdk, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    )
    settings.BASE_DIR = tmp_path
    first = fizz_dist.fizz_wheel()
    assert fizz_dist.fizz_wheel() == first  # cached
    (sdk / "spheron_sdk" / "fizz" / "cli.py").write_text(
        (sdk / "spheron_sdk" / "fizz" / "cli.py").read_text() + "\n# changed\n"
    )
    second = fizz_dist.fizz_wheel()
    assert second.sha256 != first.sha256
    with zipfile.ZipFile(second.path) as wheel:
        assert wheel.read("spheron_sdk/fizz/cli.py").decode().endswith("# changed\n")
    assert not first.path.exists()  # the old build is dropped: only the current one is served


def test_the_same_sources_build_the_same_bytes():
    assert fizz_dist.wheel_bytes() == fizz_dist.wheel_bytes()


def test_concurrent_first_requests_build_the_wheel_once(monkeypatch):
    builds = []
    real = fizz_dist.wheel_bytes

    def counting_build(*args, **kwargs):
        builds.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fizz_dist, "wheel_bytes", counting_build)
    results, barrier = [], threading.Barrier(8)

    def request() -> None:
        barrier.wait()
        results.append(fizz_dist.fizz_wheel())

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8 and len(set(results)) == 1
    assert len(builds) == 1
    assert hashlib.sha256(results[0].path.read_bytes()).hexdigest() == results[0].sha256


def test_build_fizz_wheel_command_builds_into_var_dir(settings):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("build_fizz_wheel", stdout=out)
    built = list((Path(settings.VAR_DIR) / "fizz-dist").glob("*/spheron_sdk-0.1.0-py3-none-any.whl"))
    assert len(built) == 1 and str(built[0]) in out.getvalue()


def test_tokens_page_links_to_the_install_page(provider_client):
    page = provider_client.get("/provider/tokens/").content.decode()
    assert re.search(r'<a href="/fizz/"[^>]*>Install the agent</a>', page)


def test_empty_dashboard_links_to_the_install_page(provider_client):
    page = provider_client.get("/provider/").content.decode()
    assert 'data-testid="nodes-empty"' in page
    assert re.search(r'<a href="/fizz/"[^>]*>Install the agent</a>', page)
