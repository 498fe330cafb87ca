{% autoescape off %}#!/bin/sh
# Installs the Spheron fizz node agent from {{ site }}:
#
#   curl -fsSL {{ script_url }} | sh
#
# It makes a Python virtual environment and installs the agent ({{ wheel_filename }}, built by
# this server) into it; pip fetches only the package's pinned dependencies (httpx, psutil; click,
# rich and platformdirs for the `sphnctl` CLI that comes with it) from your package index.
# Nothing is installed system-wide and nothing runs as root.
#
# Settings (environment variables):
#   FIZZ_INSTALL_DIR  where to install (default: $HOME/.spheron-fizz); the venv is $FIZZ_INSTALL_DIR/venv
#   FIZZ_PYTHON       the Python 3.11+ to use (default: python3)
#   FIZZ_DOCKER       1 to also install the Docker runtime's package, 0 not to
#                     (default: when a `docker` command is on the PATH)
#
# Everything is inside main(), called on the last line: a download cut short runs nothing.

set -eu

SITE={{ site }}
WHEEL_URL={{ wheel_url }}
WHEEL_FILE={{ wheel_filename }}
WHEEL_SHA256={{ wheel_sha256 }}
AGENT_VERSION={{ version }}
TOKENS_URL={{ tokens_url }}

say() {
    printf '%s\n' "$*"
}

die() {
    printf 'fizz install: error: %s\n' "$*" >&2
    exit 1
}

download() {  # url file
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$1" "$2"
    fi
}

main() {
    case "$(uname -s)" in
        Linux | Darwin) ;;
        *) die "the fizz agent runs on Linux and macOS; this machine is $(uname -s)." ;;
    esac

    python=${FIZZ_PYTHON:-python3}
    if ! command -v "$python" >/dev/null 2>&1; then
        die "$python not found. The agent needs Python 3.11 or newer: install it (Debian/Ubuntu: sudo apt-get install python3 python3-venv; macOS: brew install python) or set FIZZ_PYTHON to its path."
    fi
    if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
        die "the agent needs Python 3.11 or newer; $python is $("$python" -V 2>&1 || echo 'not working'). Install a newer Python and set FIZZ_PYTHON to it (e.g. FIZZ_PYTHON=python3.12)."
    fi

    if [ -n "${FIZZ_INSTALL_DIR:-}" ]; then
        install_dir=$FIZZ_INSTALL_DIR
    elif [ -n "${HOME:-}" ]; then
        install_dir=$HOME/.spheron-fizz
    else
        die "HOME is not set: set FIZZ_INSTALL_DIR to the folder to install into."
    fi
    mkdir -p "$install_dir" || die "cannot create $install_dir"
    install_dir=$(cd "$install_dir" && pwd) || die "cannot use $install_dir"
    VENV=$install_dir/venv

    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
        say "Using the virtual environment in $VENV"
    else
        if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
            die "$VENV exists and is not a virtual environment: move it away or set FIZZ_INSTALL_DIR."
        fi
        if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            die "Python's venv module is missing (with pip): on Debian/Ubuntu run sudo apt-get install python3-venv (or python3.X-venv for your version), then run this again."
        fi
        say "Making a virtual environment in $VENV"
        "$python" -m venv --clear "$VENV" || die "$python -m venv $VENV failed (see above)."
    fi

    case "${FIZZ_DOCKER:-auto}" in
        1 | yes | true) extra="[docker]" ;;
        0 | no | false) extra="" ;;
        auto) if command -v docker >/dev/null 2>&1; then extra="[docker]"; else extra=""; fi ;;
        *) die "FIZZ_DOCKER must be 1 or 0, not '$FIZZ_DOCKER'." ;;
    esac

    tmp=$(mktemp -d 2>/dev/null || mktemp -d -t fizz-install)
    trap 'rm -rf "$tmp"' EXIT
    say "Downloading the agent $AGENT_VERSION from $SITE"
    download "$WHEEL_URL" "$tmp/$WHEEL_FILE" || die "could not download $WHEEL_URL"
    "$VENV/bin/python" -c 'import hashlib, sys; sys.exit(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest() != sys.argv[2])' "$tmp/$WHEEL_FILE" "$WHEEL_SHA256" \
        || die "the downloaded agent does not match this script (the server may have been updated meanwhile): run the install command again."

    say "Installing it and its dependencies with pip"
    "$VENV/bin/python" -m pip uninstall --yes --quiet spheron-sdk >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$tmp/$WHEEL_FILE$extra" \
        || die "pip could not install the agent or its dependencies (see pip's message above)."
    installed=$("$VENV/bin/fizz" version) || die "the agent was installed but '$VENV/bin/fizz version' failed."

    say ""
    say "Installed $installed in $VENV"
    say ""
    say "Make a node token for this machine at $TOKENS_URL, then start the agent:"
    say ""
    say "  $VENV/bin/fizz start --server $SITE --token <your token>"
    say ""
    if [ -n "$extra" ]; then
        say "Add --runtime docker to run rentals in Docker containers."
    fi
    say "To type just 'fizz', add it to your PATH: export PATH=\"$VENV/bin:\$PATH\""
}

main "$@"
{% endautoescape %}
