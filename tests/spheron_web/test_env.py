from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import database_config, env_bool, env_choice, env_decimal, env_int, env_list, env_str, redis_url

ROOT = Path(__file__).resolve().parents[2]


def test_env_bool_reads_common_spellings_and_rejects_the_rest():
    assert env_bool("X", False, environ={"X": "yes"}) is True
    assert env_bool("X", True, environ={"X": "0"}) is False
    assert env_bool("X", True, environ={}) is True
    with pytest.raises(ImproperlyConfigured, match="X must be one of"):
        env_bool("X", False, environ={"X": "maybe"})


def test_env_int_checks_type_and_bounds_and_names_the_variable():
    assert env_int("N", 5, environ={"N": " 12 "}) == 12
    with pytest.raises(ImproperlyConfigured, match="N must be an integer"):
        env_int("N", 5, environ={"N": "1.5"})
    with pytest.raises(ImproperlyConfigured, match="N must be at most 10"):
        env_int("N", 5, max_value=10, environ={"N": "11"})
    with pytest.raises(ImproperlyConfigured, match="N must be at least 1"):
        env_int("N", 5, min_value=1, environ={"N": "0"})


def test_env_decimal_rejects_nan_and_out_of_range():
    assert env_decimal("FEE", Decimal("0.07"), environ={"FEE": "0.05"}) == Decimal("0.05")
    with pytest.raises(ImproperlyConfigured, match="finite"):
        env_decimal("FEE", Decimal("0.07"), environ={"FEE": "NaN"})
    with pytest.raises(ImproperlyConfigured, match="decimal"):
        env_decimal("FEE", Decimal("0.07"), environ={"FEE": "seven"})
    with pytest.raises(ImproperlyConfigured, match="at most 1"):
        env_decimal("FEE", Decimal("0.07"), max_value=Decimal(1), environ={"FEE": "2"})


def test_env_str_required_and_nul_bytes():
    with pytest.raises(ImproperlyConfigured, match="S must be set"):
        env_str("S", environ={})
    with pytest.raises(ImproperlyConfigured, match="NUL"):
        env_str("S", environ={"S": "a\x00b"})
    assert env_str("S", None, environ={"S": "  "}) is None


def test_env_list_and_choice():
    assert env_list("H", ["a"], environ={"H": "x.com, ,y.com"}) == ["x.com", "y.com"]
    assert env_list("H", ["a"], environ={}) == ["a"]
    with pytest.raises(ImproperlyConfigured, match="must be one of"):
        env_choice("C", "a", {"a", "b"}, environ={"C": "c"})


def test_database_config_defaults_to_sqlite_in_wal_mode(tmp_path):
    config = database_config(None, sqlite_path=str(tmp_path / "db.sqlite3"))
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]


def test_database_config_parses_postgres_and_rejects_other_schemes():
    config = database_config("postgres://u:p@db.example:5433/spheron", sqlite_path="unused")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.example", 5433, "spheron")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_config("mysql://u@h/db", sqlite_path="unused")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_config("nonsense://", sqlite_path="unused")


def test_redis_url_must_be_a_redis_url():
    assert redis_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        redis_url("http://127.0.0.1:6379")


def _django(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if key not in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}}
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def test_missing_secret_key_fails_loudly_without_debug():
    result = _django({"DEBUG": "0"}, "check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_bad_value_names_the_variable():
    result = _django({"DEBUG": "1", "CATALOG_PAGE_SIZE": "lots"}, "check")
    assert result.returncode != 0
    assert "CATALOG_PAGE_SIZE must be an integer" in result.stderr


def test_production_settings_pass_check_deploy():
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "prod-" + "k8Zr2pQw9xVb4nTy7mLc3hJd6fGs1aEu0iOo5" * 2,
        "ALLOWED_HOSTS": "spheron.example",
        # Production defaults: secure cookies, HSTS, SSL redirect (the test env turns them off).
        "SECURE_SSL_REDIRECT": "1",
        "SESSION_COOKIE_SECURE": "1",
        "CSRF_COOKIE_SECURE": "1",
        "SECURE_HSTS_SECONDS": "31536000",
    }
    result = _django(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
