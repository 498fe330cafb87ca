"""Private keys: only from the environment (or a file it names), never the database or a log.

The devnets sign with anvil's well-known test keys (from the public mnemonic "test test … junk");
anyone can sign with them, so `key_check` refuses them whenever DEBUG is off. Every place that
loads a key goes through `key_from_env` (or calls `key_check` itself).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# anvil's default accounts 0-9 (m/44'/60'/0'/0/i of "test test test test test test test test test
# test test junk"); tests/chain/test_keys.py derives them again to prove the list.
ANVIL_TEST_KEYS = frozenset(
    {
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
        "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
        "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
        "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
        "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
        "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
        "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    }
)


class DevKeyRefused(ImproperlyConfigured):
    pass


def _normalised(key: str) -> str:
    key = key.strip().lower()
    return key[2:] if key.startswith("0x") else key


def is_test_key(key: str) -> bool:
    return _normalised(key) in ANVIL_TEST_KEYS


def key_check(key: str, *, name: str = "the key") -> str:
    """`key` itself, unless it is a public test key and DEBUG is off. The message names the
    variable, never the key."""
    if not settings.DEBUG and is_test_key(key):
        raise DevKeyRefused(f"{name} is one of anvil's public test keys; refused when DEBUG is off.")
    return key


def key_from_env(name: str) -> str | None:
    """The key in the environment variable `name`, or in the file `name`_FILE names; checked."""
    value = os.environ.get(name, "").strip()
    if not value:
        path = os.environ.get(f"{name}_FILE", "").strip()
        if not path:
            return None
        try:
            value = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ImproperlyConfigured(f"{name}_FILE cannot be read: {exc.__class__.__name__}") from None
    return key_check(value, name=name)
