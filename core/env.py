"""Typed readers for environment variables.

Every setting is read once, in settings.py, through these helpers. A value that is set but
cannot be parsed stops the process with a message naming the variable: a typo in production
must not silently fall back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MISSING = object()


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def env_str(
    name: str, default: str | None | object = _MISSING, *, environ: Mapping[str, str] | None = None
) -> str | None:
    value = _raw(name, environ)
    if value is not None:
        if "\x00" in value:
            raise ImproperlyConfigured(f"{name} contains a NUL byte")
        return value
    if default is _MISSING:
        raise ImproperlyConfigured(f"{name} must be set")
    return default  # type: ignore[return-value]


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {value!r}")


def env_int(
    name: str,
    default: int,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = int(value, 10)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {value!r}") from None
    if min_value is not None and number < min_value:
        raise ImproperlyConfigured(f"{name} must be at least {min_value}; got {number}")
    if max_value is not None and number > max_value:
        raise ImproperlyConfigured(f"{name} must be at most {max_value}; got {number}")
    return number


def env_decimal(
    name: str,
    default: Decimal,
    *,
    min_value: Decimal | None = None,
    max_value: Decimal | None = None,
    environ: Mapping[str, str] | None = None,
) -> Decimal:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number; got {value!r}") from None
    if not number.is_finite():
        raise ImproperlyConfigured(f"{name} must be a finite number; got {value!r}")
    if min_value is not None and number < min_value:
        raise ImproperlyConfigured(f"{name} must be at least {min_value}; got {number}")
    if max_value is not None and number > max_value:
        raise ImproperlyConfigured(f"{name} must be at most {max_value}; got {number}")
    return number


def env_list(name: str, default: list[str], *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Comma-separated list; empty items are dropped."""
    value = _raw(name, environ)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str], *, environ: Mapping[str, str] | None = None) -> str:
    value = _raw(name, environ)
    if value is None:
        return default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(sorted(choices))}; got {value!r}")
    return value


def database_config(url: str | None, *, sqlite_path: str) -> dict:
    """DATABASES['default'] from DATABASE_URL, or SQLite in WAL mode when unset."""
    if url is None:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": sqlite_path,
            "OPTIONS": {
                # WAL lets the web server, the Celery worker and beat read while one writes;
                # IMMEDIATE takes the write lock up front instead of failing mid-transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    import dj_database_url

    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except (ValueError, dj_database_url.UnknownSchemeError) as exc:  # type: ignore[attr-defined]
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if not config.get("ENGINE"):
        raise ImproperlyConfigured("DATABASE_URL names no database engine")
    if config["ENGINE"] not in {"django.db.backends.postgresql", "django.db.backends.sqlite3"}:
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// or sqlite:// URL")
    return config


def redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or unix://; got {value!r}")
    return value
