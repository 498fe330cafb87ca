"""Settings for Spheron Web, read once from the environment (see README "Configuration")."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from core.env import (
    database_config,
    env_bool,
    env_choice,
    env_decimal,
    env_int,
    env_list,
    env_str,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / Path(env_str("SPHERON_VAR_DIR", "var"))  # type: ignore[arg-type]  # relative to the repo
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", None)
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = _DEV_SECRET_KEY
elif not DEBUG and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters and not the development key")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.sites",
    "allauth",
    "allauth.account",
    "django_htmx",
    # The API docs (/api/v1/docs) load Swagger UI from ninja's own static files, not a CDN.
    "ninja",
    "template_partials",
    "accounts",
    "chain",
    "billing",
    "providers",
    "marketplace",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.ApiJsonErrorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "spheron_web.urls"
WSGI_APPLICATION = "spheron_web.wsgi.application"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

# --- Data stores -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", None)
DATABASES = {"default": database_config(DATABASE_URL, sqlite_path=str(VAR_DIR / "spheron.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = redis_url(env_str("REDIS_URL", None))
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "spheron")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "core.cache.ReusingRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
else:
    # Shared between the web server, the worker and beat (unlike locmem).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }

# --- Celery --------------------------------------------------------------------------------
# Chains (issue 20): a devnet (local anvils and a local Solana RPC) unless said otherwise, whenever
# DEBUG is on; one watcher task per chain, every CHAIN_WATCH_SECONDS.
CHAIN_DEVNET = env_bool("CHAIN_DEVNET", DEBUG)
CHAIN_KEYS = ("zksync", "arbitrum", "optimism", "bnb", "avalanche", "filecoin", "base", "solana")
CHAIN_WATCH_SECONDS = env_int("CHAIN_WATCH_SECONDS", 2 if CHAIN_DEVNET else 15, min_value=1, max_value=3600)
CHAIN_CREDIT_SECONDS = env_int("CHAIN_CREDIT_SECONDS", 30, min_value=1, max_value=3600)
CHAIN_SENDER_SECONDS = env_int("CHAIN_SENDER_SECONDS", 2 if CHAIN_DEVNET else 10, min_value=1, max_value=3600)
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
else:
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _results_dir = VAR_DIR / "celery" / "results"
    _control_dir = VAR_DIR / "celery" / "control"
    for _dir in (_queue_dir, _processed_dir, _results_dir, _control_dir):
        _dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "store_processed": False,
        "control_folder": str(_control_dir),
    }
    CELERY_RESULT_BACKEND = f"file://{_results_dir}"
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Every periodic task is listed here, in one place.
CELERY_BEAT_SCHEDULE = {
    "settle-usage": {
        "task": "billing.tasks.settle_usage",
        "schedule": env_int("USAGE_SETTLEMENT_SECONDS", 3600, min_value=60, max_value=86400),
    },
    # Low-balance alerts and card auto-reload (billing.alerts, billing.autoreload): a sweep of the
    # balances (the hourly settlement checks too) and of webhook deliveries lost or due a retry.
    "check-balances": {
        "task": "billing.tasks.check_balances",
        "schedule": env_int("BALANCE_CHECK_SECONDS", 300, min_value=30, max_value=3600),
    },
    "deliver-balance-alerts": {
        "task": "billing.tasks.deliver_balance_alerts",
        "schedule": env_int("BALANCE_ALERT_SWEEP_SECONDS", 60, min_value=10, max_value=3600),
    },
    "settle-earnings": {
        "task": "billing.tasks.settle_earnings",
        "schedule": env_int("EARNINGS_SETTLEMENT_SECONDS", 3600, min_value=60, max_value=86400),
    },
    "refresh-market-board": {
        "task": "marketplace.tasks.refresh_market_board",
        "schedule": env_int("MARKET_BOARD_REFRESH_SECONDS", 60, min_value=5, max_value=3600),
    },
    # Liveness: fold heartbeats from the cache into the database, detect nodes gone silent,
    # expire unanswered challenges.
    "fold-heartbeats": {
        "task": "providers.tasks.fold_heartbeats",
        "schedule": env_int("LIVENESS_FOLD_SECONDS", 15, min_value=1, max_value=600),
    },
    "refresh-uptime": {
        "task": "providers.tasks.refresh_uptime",
        "schedule": env_int("UPTIME_REFRESH_SECONDS", 300, min_value=10, max_value=3600),
    },
    # Eras end at 00:00 UTC; the hourly run closes any that ended and are not closed yet.
    "sweep-open-orders": {
        "task": "marketplace.tasks.sweep_open_orders",
        "schedule": env_int("ORDER_SWEEP_SECONDS", 10, min_value=1, max_value=600),
    },
    "expire-deployments": {
        "task": "marketplace.tasks.expire_deployments",
        "schedule": env_int("DEPLOYMENT_EXPIRY_SECONDS", 30, min_value=1, max_value=3600),
    },
    "close-eras": {
        "task": "providers.tasks.close_eras",
        "schedule": env_int("ERA_CLOSE_CHECK_SECONDS", 3600, min_value=60, max_value=86400),
    },
    # Chains: each watcher reads its chain's deposits and credits what became final right after;
    # "credit-deposits" is the backstop for a credit that failed after its deposit became final.
    **{
        f"chain-watch-{key}": {"task": "chain.tasks.watch_chain", "args": (key,), "schedule": CHAIN_WATCH_SECONDS}
        for key in CHAIN_KEYS
    },
    "credit-deposits": {"task": "billing.tasks.credit_deposits", "schedule": CHAIN_CREDIT_SECONDS},
    # Stake from the chain (providers.stake_chain): SponStaking's final events into StakeEvents.
    "stake-chain-index": {
        "task": "providers.tasks.index_stake_chain",
        "schedule": env_int("STAKE_CHAIN_SECONDS", 3 if CHAIN_DEVNET else 30, min_value=1, max_value=3600),
    },
    # The transaction sender (chain.sender): send what was recorded, reconcile what was sent.
    "send-transactions": {"task": "chain.tasks.send_transactions", "schedule": CHAIN_SENDER_SECONDS},
    "publish-commitments": {
        "task": "marketplace.tasks.publish_commitments",
        "schedule": env_int("COMMITMENTS_PUBLISH_SECONDS", 5 if CHAIN_DEVNET else 20, min_value=1, max_value=3600),
    },
    # Slashes decided by the platform (providers.slashing) and approved payouts (billing.payouts):
    # each pass records the next transactions for the sender and settles what the sender settled.
    "run-slashes": {"task": "providers.tasks.run_slashes", "schedule": CHAIN_SENDER_SECONDS},
    "run-payouts": {"task": "billing.tasks.run_payouts", "schedule": CHAIN_SENDER_SECONDS},
    # The newest rewards tree's root to RewardDistributor (providers.reward_claims).
    "run-reward-trees": {
        "task": "providers.tasks.run_reward_trees",
        "schedule": env_int("REWARD_TREES_SECONDS", 5 if CHAIN_DEVNET else 60, min_value=1, max_value=3600),
    },
}

# --- Accounts ------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env_choice("ACCOUNT_EMAIL_VERIFICATION", "mandatory", {"mandatory", "optional", "none"})
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.forms.RolesSignupForm"
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Spheron] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if DEBUG else "https"

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, min_value=1, max_value=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Spheron <noreply@spheron.local>")

# --- Security (production values unless DEBUG) ---------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, min_value=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Failed API-key, node-token and node-secret authentications per client address (core.throttle):
# after this many in one window, further failures are 429 until the window ends.
AUTH_FAILURE_LIMIT = env_int("AUTH_FAILURE_LIMIT", 20, min_value=1, max_value=100000)
AUTH_FAILURE_WINDOW_SECONDS = env_int("AUTH_FAILURE_WINDOW_SECONDS", 300, min_value=1, max_value=86400)
# Reverse proxies whose X-Forwarded-For is believed (their own addresses, comma-separated).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])

# --- i18n / static -------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed names need `collectstatic`; development and tests serve files as they are.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env_bool("STATICFILES_MANIFEST", not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or not STORAGES["staticfiles"]["BACKEND"].startswith("whitenoise")

# Every handler redacts credentials (core/log_redaction.py). Django's own "django" and
# "django.server" loggers are redefined here so that none of their default handlers, which have no
# such filter, stays attached: "django" goes to the root handler, "django.server" (runserver's
# request lines) keeps its format.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "core.log_redaction.RedactSecretsFilter"}},
    "formatters": {
        "django.server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}", "style": "{"}
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["redact_secrets"]},
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR"})},
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
        # The RPC clients log every HTTP request at INFO (the chain watchers poll every few seconds).
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}

# --- Product settings ----------------------------------------------------------------------
# Catalog
CATALOG_PAGE_SIZE = env_int("CATALOG_PAGE_SIZE", 24, min_value=1, max_value=200)
MARKET_BOARD_CACHE_SECONDS = env_int("MARKET_BOARD_CACHE_SECONDS", 60, min_value=0, max_value=3600)
# Billing (issue: billing): fees as fractions; Stripe keys from the environment only.
PLATFORM_FEE_FIZZ = env_decimal("PLATFORM_FEE_FIZZ", Decimal("0.07"), min_value=Decimal(0), max_value=Decimal(1))
PLATFORM_FEE_PROVIDER = env_decimal(
    "PLATFORM_FEE_PROVIDER", Decimal("0.05"), min_value=Decimal(0), max_value=Decimal(1)
)
MONTHLY_RESERVATION_DISCOUNT = env_decimal(
    "MONTHLY_RESERVATION_DISCOUNT", Decimal("0.15"), min_value=Decimal(0), max_value=Decimal(1)
)
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", None)
STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY", None)
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", None)
STRIPE_API_BASE = env_str("STRIPE_API_BASE", None)  # localstripe in tests
# Stripe.js for the card pages. Stripe requires it be loaded from js.stripe.com; the browser tests
# point it at localstripe's fake (<localstripe>/js.stripe.com/v3/), which talks to STRIPE_API_BASE.
STRIPE_JS_URL = env_str("STRIPE_JS_URL", "https://js.stripe.com/v3/")
if not STRIPE_JS_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("STRIPE_JS_URL must be an http(s) URL")
# Chains (issue 20; the registry's defaults are chain/registry.py, the rows are edited in the admin;
# CHAIN_DEVNET, CHAIN_KEYS and the watch intervals are with the beat schedule above). Devnet ports:
CHAIN_DEVNET_PORTS = dict(zip(CHAIN_KEYS, (8545, 8546, 8547, 8548, 8549, 8550, 8551, 8899), strict=True))
# The server's RPC URL per chain, from the environment only (it may carry a provider's API key):
# CHAIN_<KEY>_RPC_URL, e.g. CHAIN_ARBITRUM_RPC_URL. Unset: the registry row's public URL.
CHAIN_RPC_URLS = {
    key: env_str(f"CHAIN_{key.upper()}_RPC_URL", f"http://127.0.0.1:{port}" if CHAIN_DEVNET else None)
    for key, port in CHAIN_DEVNET_PORTS.items()
}
CHAIN_DEVNET_FINALITY = env_int("CHAIN_DEVNET_FINALITY", 3, min_value=1, max_value=1000)
# A rate older than this gives no quote (a quote holds 15-60 min at payment processors); deposits
# already seen keep the rate recorded when they were first seen. The devnet's demo rates last a month.
CHAIN_RATE_MAX_AGE_SECONDS = env_int(
    "CHAIN_RATE_MAX_AGE_SECONDS", 30 * 86400 if CHAIN_DEVNET else 3600, min_value=10, max_value=365 * 86400
)
# The watcher reads at most this many blocks per call, and re-reads this many below its cursor
# (at most the chain's finality) so a log that a reorg moved into an already-read block is found.
CHAIN_SCAN_MAX_BLOCKS = env_int("CHAIN_SCAN_MAX_BLOCKS", 2000, min_value=1, max_value=100000)
CHAIN_RESCAN_BLOCKS = env_int("CHAIN_RESCAN_BLOCKS", 64, min_value=0, max_value=10000)
CHAIN_RPC_TIMEOUT_SECONDS = env_int("CHAIN_RPC_TIMEOUT_SECONDS", 10, min_value=1, max_value=120)
# The transaction sender (chain.sender). No receipt this long after a broadcast: re-send with the
# same nonce and fees raised by CHAIN_SENDER_FEE_BUMP_PERCENT (nodes replace a pending transaction
# only for at least 10-12.5% more); after CHAIN_SENDER_MAX_ATTEMPTS broadcasts it is left "stuck"
# for an operator (the admin's "re-send now").
CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS = env_int(
    "CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS", 120, min_value=0, max_value=86400
)
CHAIN_SENDER_FEE_BUMP_PERCENT = env_int("CHAIN_SENDER_FEE_BUMP_PERCENT", 25, min_value=13, max_value=500)
CHAIN_SENDER_MAX_ATTEMPTS = env_int("CHAIN_SENDER_MAX_ATTEMPTS", 5, min_value=1, max_value=100)
# Gas limit = the estimate plus this margin (state can change between estimate and inclusion).
CHAIN_SENDER_GAS_MARGIN_PERCENT = env_int("CHAIN_SENDER_GAS_MARGIN_PERCENT", 20, min_value=0, max_value=200)
# Provider earnings stay pending this long (a payment can still be reversed), then settle.
EARNINGS_HOLD_HOURS = env_int("EARNINGS_HOLD_HOURS", 72, min_value=0, max_value=24 * 90)
# Payouts on chain (billing.payouts): paid from the hot wallet whose key is in the environment
# variable PAYOUT_KEY_ENV names, on an EVM chain of the registry, in its native token or $SPON at
# the rate recorded when the payout is approved. A request above PAYOUT_APPROVAL_THRESHOLD_USD
# waits for an admin's approval; below PAYOUT_MIN_USD it is refused.
PAYOUT_KEY_ENV = env_str("PAYOUT_KEY_ENV", "CHAIN_PAYOUT_KEY")
PAYOUT_APPROVAL_THRESHOLD_USD = env_decimal("PAYOUT_APPROVAL_THRESHOLD_USD", Decimal("500"), min_value=Decimal(0))
PAYOUT_MIN_USD = env_decimal("PAYOUT_MIN_USD", Decimal("1"), min_value=Decimal(0))
# Era rewards (providers.rewards.params_from_settings; the formula is spheron_sdk.rewards, the
# figures protocol-facts.md's "Fizz node"; "ours" where marked). RewardParams checks them when
# built: weights summing to 1, a trust multiplier for each tier 1-7, at most 6 decimals for the
# threshold, at most 18 for the emission.
REWARD_K_PER_GPU = env_decimal("REWARD_K_PER_GPU", Decimal("500"), min_value=Decimal(0))
REWARD_K_PER_CPU_CORE = env_decimal("REWARD_K_PER_CPU_CORE", Decimal("25"), min_value=Decimal(0))
REWARD_UPTIME_THRESHOLD = env_decimal(
    "REWARD_UPTIME_THRESHOLD", Decimal("0.5"), min_value=Decimal(0), max_value=Decimal(1)
)
REWARD_WEIGHTS_GPU = {
    name: env_decimal(f"REWARD_WEIGHT_GPU_{name.upper()}", Decimal(default), min_value=Decimal(0), max_value=Decimal(1))
    for name, default in (("cpu", "0.2"), ("ram", "0.1"), ("storage", "0.1"), ("gpu", "0.6"))
}
REWARD_WEIGHTS_CPU = {
    name: env_decimal(f"REWARD_WEIGHT_CPU_{name.upper()}", Decimal(default), min_value=Decimal(0), max_value=Decimal(1))
    for name, default in (("cpu", "0.5"), ("ram", "0.25"), ("storage", "0.25"))
}
REWARD_TRUST_MULTIPLIERS = {
    tier: env_decimal(f"REWARD_TRUST_MULTIPLIER_{tier}", Decimal(default), min_value=Decimal(0), max_value=Decimal(100))
    for tier, default in zip(range(1, 8), ("2.0", "1.7", "1.5", "1.2", "1.1", "1.0", "0"), strict=True)
}
REWARD_UTILIZATION_BONUS = env_decimal(  # ours: a node leased all its online time earns 1.5x
    "REWARD_UTILIZATION_BONUS", Decimal("0.5"), min_value=Decimal(0), max_value=Decimal(10)
)
REWARD_ERA_EMISSION_SPON = env_decimal(  # ours: whole $SPON issued per era, shared pro rata by points
    "REWARD_ERA_EMISSION_SPON", Decimal("100000"), min_value=Decimal(0)
)
# ours: the calculator's assumed network points per era (emission / points = $SPON per point) until
# an era has closed with rewards.
REWARD_CALCULATOR_NETWORK_POINTS = env_decimal(
    "REWARD_CALCULATOR_NETWORK_POINTS", Decimal("1000000"), min_value=Decimal(1)
)
# Guaranteed minimum income (ours; providers.era_rewards): a node in good standing for the era (era
# uptime >= REWARD_FLOOR_MIN_UPTIME, out of its reconnect cool-down all era, no failed or missed
# liveness challenge, no forfeit, not slashed) whose era income (rental earnings + rewards at the
# era's $SPON rate) is below its floor (USD per online hour per unit of its tier: per GPU, or per
# CPU core for CPU tiers) is topped up from the subsidy pool, at most REWARD_FLOOR_POOL_USD an era
# (cut pro rata when short).
REWARD_FLOOR_USD_PER_UNIT_HOUR = {
    tier: env_decimal(
        f"REWARD_FLOOR_{tier.upper().replace('-', '_')}", Decimal(default), min_value=Decimal(0), max_value=Decimal(100)
    )
    for tier, default in (
        ("entry-1", "0.005"), ("entry-2", "0.01"), ("low-1", "0.015"), ("low-2", "0.02"),
        ("medium-1", "0.03"), ("medium-2", "0.045"), ("high-1", "0.06"), ("high-2", "0.09"),
        ("ultra-high-1", "0.18"), ("ultra-high-2", "0.36"), ("ultra-high-3", "0.45"),
        ("cpu-basic", "0.0002"), ("cpu-general", "0.0005"), ("cpu-hpc", "0.001"),
    )
}  # fmt: skip
REWARD_FLOOR_POOL_USD = env_decimal("REWARD_FLOOR_POOL_USD", Decimal("1000"), min_value=Decimal(0))
REWARD_FLOOR_MIN_UPTIME = env_decimal(
    "REWARD_FLOOR_MIN_UPTIME", Decimal("0.95"), min_value=Decimal(0), max_value=Decimal(1)
)
# Providers
MIN_STAKE_PER_GPU_SPON = env_decimal("MIN_STAKE_PER_GPU_SPON", Decimal("200"), min_value=Decimal(0))
# Stake from the chain (providers.stake_chain): the SponStaking contract on the home chain. The
# address comes from the environment; left empty on a devnet (CHAIN_DEVNET) it is the address
# chain.evm.artifacts.deploy_all gives SponStaking for the devnet deployer (chain.devnet.DEPLOYER),
# computed where it is used (providers.stake_chain.staking_address). STAKING_START_BLOCK: the block
# the contract was deployed in (the indexer reads from there on a new cursor).
STAKING_CHAIN_KEY = env_str("STAKING_CHAIN_KEY", "base")
STAKING_CONTRACT_ADDRESS = env_str("STAKING_CONTRACT_ADDRESS", "") or ""
STAKING_START_BLOCK = env_int("STAKING_START_BLOCK", 0, min_value=0, max_value=10**12)
# API keys (accounts.auth): requests per key per route class ("N/sec|min|hour|day" or "N/<k>s"),
# counted in the cache (shared by every web process); a refused request is a 429 with Retry-After.
API_KEY_RATE_LIMITS = {
    "read": env_str("API_KEY_RATE_READ", "600/min"),
    "write": env_str("API_KEY_RATE_WRITE", "120/min"),
    "deploy": env_str("API_KEY_RATE_DEPLOY", "30/min"),
}
# Low-balance alerts (billing.alerts): webhook attempts at most, the first retry's wait (then ×4
# each time), the webhook's timeout. Card auto-reload (billing.autoreload): the smallest reload
# and the wait after a failed one before trying again (or until the settings change).
BALANCE_ALERT_MAX_ATTEMPTS = env_int("BALANCE_ALERT_MAX_ATTEMPTS", 6, min_value=1, max_value=20)
BALANCE_ALERT_RETRY_BASE_SECONDS = env_int("BALANCE_ALERT_RETRY_BASE_SECONDS", 30, min_value=1, max_value=3600)
BALANCE_ALERT_WEBHOOK_TIMEOUT_SECONDS = env_int("BALANCE_ALERT_WEBHOOK_TIMEOUT_SECONDS", 5, min_value=1, max_value=60)
# PEM bundle of the CAs a webhook receiver's certificate may chain to; empty: certifi's public CAs.
BALANCE_ALERT_WEBHOOK_CA_FILE = env_str("BALANCE_ALERT_WEBHOOK_CA_FILE", "")
AUTORELOAD_MIN_USD = env_int("AUTORELOAD_MIN_USD", 20, min_value=1, max_value=100_000)  # whole dollars
AUTORELOAD_RETRY_AFTER_FAILURE_SECONDS = env_int(
    "AUTORELOAD_RETRY_AFTER_FAILURE_SECONDS", 21600, min_value=60, max_value=7 * 86400
)
# Reward claims (providers.reward_claims): RewardDistributor on the home chain (REWARD_CHAIN_KEY,
# empty: STAKING_CHAIN_KEY). Its address from the environment; empty on a devnet: its CREATE2 address
# for the devnet deployer. The root setter's key (ROOT_SETTER_ROLE) is in the environment variable
# REWARD_ROOT_KEY_ENV names; without it built trees wait.
REWARD_CHAIN_KEY = env_str("REWARD_CHAIN_KEY", "") or ""
REWARD_DISTRIBUTOR_ADDRESS = env_str("REWARD_DISTRIBUTOR_ADDRESS", "") or ""
REWARD_ROOT_KEY_ENV = env_str("REWARD_ROOT_KEY_ENV", "CHAIN_RECORDER_KEY")
# The devnet's "Get test $SPON" button (DEBUG and CHAIN_DEVNET only): whole $SPON per press.
STAKE_FAUCET_SPON = env_int("STAKE_FAUCET_SPON", 10_000, min_value=1, max_value=10**7)
# Slashing on chain (providers.slashing): the name of the environment variable holding the key
# with SponStaking's SLASHER_ROLE (without it decided slashes wait, recorded).
SLASHER_KEY_ENV = env_str("SLASHER_KEY_ENV", "CHAIN_SLASHER_KEY")
# The slashing policy (issue 22, providers.slashing / marketplace.deployments.penalties): downtime
# during an active lease slashes the value of that downtime (the lease's price for the seconds
# lost, in $SPON at its rate) when SLASH_LEASE_DOWNTIME is on; SLASH_LIVENESS_REPEATS failed liveness
# challenges of one node within an era slash SLASH_LIVENESS_SPON whole $SPON (each era at most
# once). An upheld appeal returns the slashed $SPON from the treasury, whose key is in the
# environment variable SLASH_REFUND_KEY_ENV names (`make run`: anvil's account #1, the treasury).
# Without a fresh SPON rate (CHAIN_RATE_MAX_AGE_SECONDS) no downtime slash is decided; the error log
# gives the lease, interval and USD value for an admin to decide by hand.
SLASH_LEASE_DOWNTIME = env_bool("SLASH_LEASE_DOWNTIME", True)
SLASH_LIVENESS_REPEATS = env_int("SLASH_LIVENESS_REPEATS", 3, min_value=1, max_value=1000)
SLASH_LIVENESS_SPON = env_int("SLASH_LIVENESS_SPON", 50, min_value=0, max_value=10**7)
SLASH_REFUND_KEY_ENV = env_str("SLASH_REFUND_KEY_ENV", "CHAIN_TREASURY_KEY")

# Node liveness (providers.liveness). The agent heartbeats every interval; a node silent for
# longer than NODE_OFFLINE_AFTER_SECONDS goes offline at its last heartbeat.
NODE_HEARTBEAT_INTERVAL_SECONDS = env_int("NODE_HEARTBEAT_INTERVAL_SECONDS", 15, min_value=1, max_value=300)
NODE_OFFLINE_AFTER_SECONDS = env_int("NODE_OFFLINE_AFTER_SECONDS", 60, min_value=2, max_value=3600)
# last_seen_at in the database moves in steps of this; the exact time stays in the cache.
NODE_LAST_SEEN_RESOLUTION_SECONDS = env_int("NODE_LAST_SEEN_RESOLUTION_SECONDS", 60, min_value=1, max_value=3600)
NODE_CHALLENGES_PER_HOUR = env_decimal("NODE_CHALLENGES_PER_HOUR", Decimal("4"), min_value=Decimal(0))
NODE_CHALLENGE_TTL_SECONDS = env_int("NODE_CHALLENGE_TTL_SECONDS", 120, min_value=5, max_value=3600)
# A failed or missed challenge counts as this much downtime.
NODE_CHALLENGE_PENALTY_SECONDS = env_int("NODE_CHALLENGE_PENALTY_SECONDS", 600, min_value=0, max_value=86400)
# Free memory and storage must be at least this share of what the node offers as free.
NODE_CHALLENGE_TOLERANCE = env_decimal(
    "NODE_CHALLENGE_TOLERANCE", Decimal("0.75"), min_value=Decimal(0), max_value=Decimal(1)
)
NODE_REWARD_COOLDOWN_SECONDS = env_int("NODE_REWARD_COOLDOWN_SECONDS", 3 * 3600, min_value=0, max_value=86400)
NODE_MIN_AGENT_VERSION = env_str("NODE_MIN_AGENT_VERSION", "0.1.0")
NODE_ERA_HOURS = 24

# Deployments and the matchmaker (marketplace.matching.services). Weights of the normalised factors.
MATCH_WEIGHTS = {
    name: env_decimal(f"MATCH_WEIGHT_{name.upper()}", Decimal(default), min_value=Decimal(0), max_value=Decimal(100))
    for name, default in (
        ("price", "0.30"),
        ("uptime", "0.25"),
        ("reputation", "0.15"),
        ("stake", "0.10"),
        ("proximity", "0.05"),
        ("fit", "0.05"),
        ("random", "0.10"),
    )
}
MATCH_TIMEOUT_SECONDS = env_int("MATCH_TIMEOUT_SECONDS", 60, min_value=1, max_value=3600)
MATCH_CANDIDATE_LIMIT = env_int("MATCH_CANDIDATE_LIMIT", 50, min_value=1, max_value=1000)
# Orders a worker claims and matches in one transaction; an order that found no free node waits
# this long before it is tried again (until its MATCH_TIMEOUT_SECONDS deadline).
MATCH_BATCH_SIZE = env_int("MATCH_BATCH_SIZE", 5, min_value=1, max_value=500)
MATCH_RETRY_SECONDS = env_int("MATCH_RETRY_SECONDS", 5, min_value=0, max_value=600)
# Key of the seed derivation (HMAC of the order); defaults to one derived from SECRET_KEY.
MATCH_SEED_SECRET = env_str("MATCH_SEED_SECRET", "") or ""
# Hold for the whole duration, but at most this many hours up front (topped up as it runs).
DEPLOYMENT_HOLD_HOURS = env_int("DEPLOYMENT_HOLD_HOURS", 24, min_value=1, max_value=24 * 31)
# A node silent this long (from its last heartbeat) during a lease is declared failed and the
# deployment moves on, within one LIVENESS_FOLD_SECONDS after.
FAILOVER_GRACE_SECONDS = env_int("FAILOVER_GRACE_SECONDS", 120, min_value=0, max_value=3600)
# An ended lease keeps its share of the node until the agent confirms the workload stopped (or
# stops reporting it), or this long after the end: a new lease never starts beside the old one.
LEASE_STOP_TIMEOUT_SECONDS = env_int("LEASE_STOP_TIMEOUT_SECONDS", 300, min_value=1, max_value=86400)

# Ninja: no silent coercions in the API; our own error shape is set in spheron_web/api.py.
NINJA_PAGINATION_MAX_LIMIT = 200

# Match commitments on chain (marketplace.deployments.commitments): the LeaseRegistry on the home
# chain (empty on a devnet: the deterministic devnet address), and the name of the environment
# variable holding the recorder's key (RECORDER_ROLE). Without that key the publisher waits.
COMMITMENTS_CHAIN_KEY = env_str("COMMITMENTS_CHAIN_KEY", "base")
LEASE_REGISTRY_ADDRESS = env_str("LEASE_REGISTRY_ADDRESS", "") or ""
COMMITMENTS_RECORDER_KEY_ENV = env_str("COMMITMENTS_RECORDER_KEY_ENV", "CHAIN_RECORDER_KEY")
