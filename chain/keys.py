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

from chain.evm.anvil import DEV_ACCOUNTS

# anvil's default accounts 0-9 (m/44'/60'/0'/0/i of "test test test test test test test test test
# test test junk"), as chain.evm.anvil lists them; tests/chain/test_events_and_keys.py derives them
# again to prove the list.
ANVIL_TEST_KEYS = frozenset(account.private_key.lower().removeprefix("0x") for account in DEV_ACCOUNTS)


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
