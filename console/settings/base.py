from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A local .env file is read when present; real environment variables win over it.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="switchyard-local-only-key-change-me-in-production-0000")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The console's public address, for links in e-mails and chat messages (e.g. https://switchyard.brand.com).
SITE_URL = env.str("SITE_URL", default="")

# The embedded default keeps its data in var/ beside the code; DATABASE_URL moves it to PostgreSQL.
VAR_DIR = Path(env.str("SWITCHYARD_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'switchyard.sqlite3'}")}


def tune_database(database: dict) -> dict:
    """Make SQLite usable by a web process and a worker at once; keep PostgreSQL connections open."""
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("OPTIONS", {}).update(
            {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            }
        )
    else:
        database.setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
        database.setdefault("CONN_HEALTH_CHECKS", True)
    return database


tune_database(DATABASES["default"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_q",
    "django_countries",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_filters",
    "import_export",
    "simple_history",
    "console",
    "mappings",
    "exceptions",
    "syncs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a signed-in user unless its view says otherwise (login, health checks, webhooks).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"
ASGI_APPLICATION = "console.asgi.application"

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
                "console.context_processors.navigation",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="Europe/London")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve static files straight from the apps: no collectstatic needed to run locally.
WHITENOISE_USE_FINDERS = True

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
globals().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="switchyard@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# django-q2. The ORM broker by default; Redis when Q_BROKER_URL is set. `retry` must exceed `timeout`, or a task
# still running when `retry` passes is handed to a second worker.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=300)
Q_RETRY = env.int("Q_RETRY", default=Q_TIMEOUT + 60)
if Q_RETRY <= Q_TIMEOUT:
    raise ImproperlyConfigured(f"Q_RETRY ({Q_RETRY}s) must be greater than Q_TIMEOUT ({Q_TIMEOUT}s).")
Q_BROKER_URL = env.str("Q_BROKER_URL", default="")
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="switchyard"),
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    "retry": Q_RETRY,
    "max_attempts": 1,
    "queue_limit": 50,
    "save_limit": 1000,
    "catch_up": False,
    "label": "Background tasks",
}
if Q_BROKER_URL:
    if not Q_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured("Q_BROKER_URL must be a redis:// or rediss:// URL.")
    Q_CLUSTER["redis"] = Q_BROKER_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = env.float("Q_POLL", default=1.0)

REST_FRAMEWORK = {
    # Token first: an API call without credentials is answered 401 (with WWW-Authenticate), not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchyard API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Two choice sets share a field name (an exception's status vs the queue's status filter; a timeline event's
    # action vs a bulk action): name them so the schema's enums do not collide.
    "ENUM_NAME_OVERRIDES": {
        "ExceptionStatusEnum": "exceptions.models.Status",
        "EventActionEnum": "exceptions.models.ExceptionEvent.Action",
        "BulkActionEnum": "exceptions.serializers.BULK_ACTIONS",
    },
}

# CSV import/export of mappings: an import needs the model's change permission, an export its view permission,
# the whole file is one transaction, and exported cells that start like a formula are escaped.
IMPORT_EXPORT_USE_TRANSACTIONS = True
IMPORT_EXPORT_SKIP_ADMIN_LOG = False
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "change"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True

SIMPLE_HISTORY_REVERT_DISABLED = False

# Systems whose product codes equal Centra's SKU unless a SkuMapping says otherwise. Any other system must have
# an explicit mapping, and a missing one is an `unmapped_sku` exception.
SKU_SAME_AS_CENTRA = env.list("SKU_SAME_AS_CENTRA", default=["fulfil", "inventory_planner"])

# --- Connections to the outside world ----------------------------------------------------------------------------
# Base URLs and credentials come only from the environment (NAME, or NAME_FILE naming a file that holds it, as
# container secrets do). The defaults point at the local sandbox (`python manage.py sandbox`), whose
# credentials are not secret.
SANDBOX_URL = env.str("SANDBOX_URL", default="http://127.0.0.1:8100")


def secret(name: str, default: str = "") -> str:
    path = env.str(f"{name}_FILE", default="")
    if path:
        return Path(path).read_text().strip()
    return env.str(name, default=default)


CONNECTIONS = {
    "centra": {
        "base_url": env.str("CENTRA_BASE_URL", default=f"{SANDBOX_URL}/centra"),
        "token": secret("CENTRA_API_TOKEN", "sandbox-centra"),
        # The REST Order API (refunds): its own URL and key.
        "order_api_url": env.str("CENTRA_ORDER_API_URL", default=f"{SANDBOX_URL}/centra/api/order"),
        "order_api_key": secret("CENTRA_ORDER_API_KEY", "sandbox-centra-orders"),
        "webhook_secret": secret("CENTRA_WEBHOOK_SECRET", "sandbox-centra-webhooks"),
        "requests_per_10s": env.int("CENTRA_REQUESTS_PER_10S", default=60),
        "mutations_per_10s": env.int("CENTRA_MUTATIONS_PER_10S", default=100),
        "mutations_per_hour": env.int("CENTRA_MUTATIONS_PER_HOUR", default=1000),
    },
    "fulfil": {
        "base_url": env.str("FULFIL_BASE_URL", default=f"{SANDBOX_URL}/fulfil/api/v2"),
        "api_key": secret("FULFIL_API_KEY", "sandbox-fulfil"),
        "webhook_secret": secret("FULFIL_WEBHOOK_SECRET", "c2FuZGJveC1mdWxmaWwtd2ViaG9va3M="),
        "requests_per_second": env.int("FULFIL_REQUESTS_PER_SECOND", default=10),
    },
    "virtualstock": {
        "base_url": env.str("VIRTUALSTOCK_BASE_URL", default=f"{SANDBOX_URL}/virtualstock"),
        "username": env.str("VIRTUALSTOCK_USERNAME", default="supplier"),
        "password": secret("VIRTUALSTOCK_PASSWORD", "sandbox"),
        "requests_per_minute": env.int("VIRTUALSTOCK_REQUESTS_PER_MINUTE", default=250),
    },
    "inventory_planner": {
        "base_url": env.str("INVENTORY_PLANNER_BASE_URL", default=f"{SANDBOX_URL}/inventory-planner/api/v1"),
        "api_key": secret("INVENTORY_PLANNER_API_KEY", "sandbox-inventory-planner"),
        "account": env.str("INVENTORY_PLANNER_ACCOUNT", default="a1000"),
        "requests_per_minute": env.int("INVENTORY_PLANNER_REQUESTS_PER_MINUTE", default=120),
    },
    "marketplace": {
        "base_url": env.str("MARKETPLACE_BASE_URL", default=f"{SANDBOX_URL}/marketplace/api/v1"),
        "api_key": secret("MARKETPLACE_API_KEY", "sandbox-marketplace"),
        "webhook_secret": secret("MARKETPLACE_WEBHOOK_SECRET", "sandbox-marketplace-webhooks"),
        "requests_per_second": env.int("MARKETPLACE_REQUESTS_PER_SECOND", default=20),
    },
}
# Webhook bodies larger than this are refused (413) before they are read.
WEBHOOK_MAX_BYTES = env.int("WEBHOOK_MAX_BYTES", default=1024 * 1024)
CONNECTOR_CONNECT_TIMEOUT = env.float("CONNECTOR_CONNECT_TIMEOUT", default=5.0)
CONNECTOR_READ_TIMEOUT = env.float("CONNECTOR_READ_TIMEOUT", default=30.0)

# How often the worker writes its heartbeat (seconds) and after how long without one the console calls it down.
WORKER_HEARTBEAT_STALE_AFTER = env.int("WORKER_HEARTBEAT_STALE_AFTER", default=180)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # urllib3 at DEBUG logs every request line, credentials in URLs included: never below INFO.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "urllib3": {"level": "INFO"}},
}

# --- The exception queue -----------------------------------------------------------------------------------------
# Transient failures (timeouts, 5xx, 429) are retried automatically this many times, with exponential backoff
# from the base delay up to the maximum, before they are a person's problem.
EXCEPTION_AUTO_RETRIES = env.int("EXCEPTION_AUTO_RETRIES", default=5)
EXCEPTION_RETRY_BASE_SECONDS = env.int("EXCEPTION_RETRY_BASE_SECONDS", default=60)
EXCEPTION_RETRY_MAX_SECONDS = env.int("EXCEPTION_RETRY_MAX_SECONDS", default=3600)
# Rough rates to one currency, used only to rank exceptions by the value at stake.
EXCEPTION_RANKING_RATES = env.dict(
    "EXCEPTION_RANKING_RATES", cast={"value": float}, default={"EUR": 1.0, "SEK": 0.087, "GBP": 1.16, "USD": 0.92}
)
# Team digests: how often (minutes), and where (each team's members' e-mail, plus an optional Slack-compatible
# incoming webhook per team: EXCEPTION_DIGEST_WEBHOOK_FINANCE=https://hooks.slack.com/...).
EXCEPTION_DIGEST_MINUTES = env.int("EXCEPTION_DIGEST_MINUTES", default=60)
EXCEPTION_DIGEST_WEBHOOKS = {
    team: secret(f"EXCEPTION_DIGEST_WEBHOOK_{team.upper()}", "")
    for team in ("ecommerce", "finance", "operations", "customer_service")
}

# Orders imported into Centra get numbers from here up (plus the link's id), reserved before the order is sent.
CENTRA_IMPORT_ORDER_NUMBER_BASE = env.int("CENTRA_IMPORT_ORDER_NUMBER_BASE", default=900000)
# An order that has not reached its next step this long after the last raises order_stalled: imported and
# acknowledged at its source; in Fulfil; fully shipped.
ORDER_STALLED_IMPORT_MINUTES = env.int("ORDER_STALLED_IMPORT_MINUTES", default=60)
ORDER_STALLED_EXPORT_MINUTES = env.int("ORDER_STALLED_EXPORT_MINUTES", default=120)
ORDER_STALLED_SHIP_HOURS = env.int("ORDER_STALLED_SHIP_HOURS", default=72)
# Order export (Centra → Fulfil): the Centra statuses an order is exported in; whether a web order waits until its
# payment is captured, and how long before the wait raises payment_capture_lag; and, for the very first run, the
# moment before which orders are left alone (ISO 8601, e.g. 2025-01-01T00:00:00+00:00; empty: every order).
ORDER_EXPORT_STATUSES = env.list("ORDER_EXPORT_STATUSES", default=["CONFIRMED", "PROCESSING", "SHIPPED"])
ORDER_EXPORT_REQUIRE_CAPTURE = env.bool("ORDER_EXPORT_REQUIRE_CAPTURE", default=True)
PAYMENT_CAPTURE_LAG_MINUTES = env.int("PAYMENT_CAPTURE_LAG_MINUTES", default=60)
ORDER_EXPORT_SINCE = env.str("ORDER_EXPORT_SINCE", default="")

# Rate limits counted across every worker on every machine (one database row per bucket), so several clusters
# together stay inside each API's budget. Off, each process paces itself alone.
RATE_LIMITS_SHARED = env.bool("RATE_LIMITS_SHARED", default=True)

# Order reconciliation looks at this many days up to yesterday each night (a late export settles its day).
ORDER_RECONCILE_DAYS = env.int("ORDER_RECONCILE_DAYS", default=7)

# Read Centra's events queue every minute (for a brand that does not send Centra's webhooks to Switchyard).
CENTRA_EVENTS_POLL = env.bool("CENTRA_EVENTS_POLL", default=False)

# --- Stock sync ---------------------------------------------------------------------------------------------------
# The system whose stock figures are the truth: centra, fulfil or inventory_planner.
STOCK_MASTER = env.str("STOCK_MASTER", default="fulfil")
# The Centra warehouse that channel stock is set in when Centra is a channel rather than the master.
STOCK_CENTRA_WAREHOUSE_ID = env.int("STOCK_CENTRA_WAREHOUSE_ID", default=1)
# A push that would set more than this share of a channel's selling SKUs to zero at once (and at least the minimum
# count) is held for operations to approve: bad master data must not empty a storefront.
STOCK_ZERO_GUARD_SHARE = env.float("STOCK_ZERO_GUARD_SHARE", default=0.2)
STOCK_ZERO_GUARD_MIN = env.int("STOCK_ZERO_GUARD_MIN", default=20)
# A push run stops writing after this many seconds (the riskiest changes go first; the rest waits for the next
# run), so it ends well inside the task time limit and leaves workers free for webhooks, even when an API allows
# one product a call.
STOCK_PUSH_MAX_SECONDS = env.int("STOCK_PUSH_MAX_SECONDS", default=min(60, Q_TIMEOUT // 3))
# A SKU × channel pair not confirmed by the channel for this long raises stock_stale.
STOCK_STALE_MINUTES = env.int("STOCK_STALE_MINUTES", default=120)
# Units of an order Switchyard has seen but the stock master has not recorded yet count as sold on every channel
# for at most this long (then the order is stalled and someone is on it).
STOCK_IN_FLIGHT_MAX_HOURS = env.int("STOCK_IN_FLIGHT_MAX_HOURS", default=24)
# Full reconcile (reads every channel's actual stock, reports and repairs drift): how often, in minutes.
STOCK_FULL_RECONCILE_MINUTES = env.int("STOCK_FULL_RECONCILE_MINUTES", default=360)
# A stock write sent again after a timeout: its first attempt may land after a later write and show an older figure.
# The SKUs written then are read back from the channel this long after, and pushed again if they drifted.
STOCK_VERIFY_AFTER_SECONDS = env.float("STOCK_VERIFY_AFTER_SECONDS", default=120.0)

# --- Product sync -------------------------------------------------------------------------------------------------
# Centra is the master of titles, copy, images, attributes and prices; product_sync sends them to each Virtualstock
# and marketplace channel. The Centra attributes each target requires (and is sent), by channel code or by system:
# "marketplace=material|care,john-lewis=material". A product missing one of them is not sent to that channel.
PRODUCT_SYNC_REQUIRED_ATTRIBUTES = {
    target: [name.strip() for name in names.split("|") if name.strip()]
    for target, names in env.dict("PRODUCT_SYNC_REQUIRED_ATTRIBUTES", default={"marketplace": "material"}).items()
}
# The Centra pricelist whose prices each channel gets, by channel code: "john-lewis=3,marketplace=2". A channel not
# named gets the pricelist with the id of its Centra market (how the sandbox lays them out: one per market).
PRODUCT_SYNC_PRICELISTS = {
    code: int(pricelist) for code, pricelist in env.dict("PRODUCT_SYNC_PRICELISTS", default={}).items()
}
# Each run reads the Centra products changed since the newest change it last saw, less this overlap; a full sweep
# (every product, and a read-back of every channel for edits made there) runs when this many hours have passed.
PRODUCT_SYNC_OVERLAP_MINUTES = env.int("PRODUCT_SYNC_OVERLAP_MINUTES", default=10)
PRODUCT_SYNC_FULL_SWEEP_HOURS = env.int("PRODUCT_SYNC_FULL_SWEEP_HOURS", default=24)
# A product sync run stops sending after this many seconds (Virtualstock takes one product a call: a first sync of a
# large catalogue goes over several runs, each resuming where the last stopped), well inside the task time limit.
PRODUCT_SYNC_MAX_SECONDS = env.int("PRODUCT_SYNC_MAX_SECONDS", default=min(60, Q_TIMEOUT // 3))

# --- Shipments and returns ----------------------------------------------------------------------------------------
# Shipment sync reads Fulfil's shipments done since its cursor (Fulfil's newest change it has seen), starting this
# much earlier, so a shipment committed late with an earlier write date is never skipped; the first run looks back
# SHIPMENT_SYNC_FIRST_LOOKBACK_HOURS.
SHIPMENT_SYNC_OVERLAP_MINUTES = env.int("SHIPMENT_SYNC_OVERLAP_MINUTES", default=30)
SHIPMENT_SYNC_FIRST_LOOKBACK_HOURS = env.int("SHIPMENT_SYNC_FIRST_LOOKBACK_HOURS", default=72)
# Ask Centra to capture the payment when a shipment is created. A capture that fails is a finance exception.
CENTRA_CAPTURE_ON_SHIPMENT = env.bool("CENTRA_CAPTURE_ON_SHIPMENT", default=True)
# When Centra is the stock master: the Centra warehouse returned units are delivered into once inspected.
RETURNS_CENTRA_WAREHOUSE_ID = env.int("RETURNS_CENTRA_WAREHOUSE_ID", default=STOCK_CENTRA_WAREHOUSE_ID)

# --- Inventory Planner feeds --------------------------------------------------------------------------------------
# Inventory Planner fetches the products and sales-orders CSV files daily from /feeds/inventory-planner/, with HTTP
# basic auth. No password: the feeds answer 404. What each column holds is in docs/feeds.md.
IP_FEED_USERNAME = env.str("IP_FEED_USERNAME", default="inventory-planner")
IP_FEED_PASSWORD = secret("IP_FEED_PASSWORD", "")
# The Centra pricelist whose prices the products feed carries (in the currency Inventory Planner was given as the
# store's primary currency), and the Centra warehouse whose stock it carries (empty: the total over every warehouse).
IP_FEED_CENTRA_PRICELIST_ID = env.int("IP_FEED_CENTRA_PRICELIST_ID", default=1)
IP_FEED_CENTRA_WAREHOUSE_ID = env.int("IP_FEED_CENTRA_WAREHOUSE_ID", default=None)
# The Inventory Planner warehouse the sales orders are booked to, and the vendor every product is given (Centra
# holds neither).
IP_FEED_WAREHOUSE = env.str("IP_FEED_WAREHOUSE", default="Centra")
IP_FEED_VENDOR = env.str("IP_FEED_VENDOR", default="")
# The sales-orders feed holds the orders placed in the last this many days (a request may ask for more with ?since=).
IP_FEED_SALES_DAYS = env.int("IP_FEED_SALES_DAYS", default=365)

# --- Metrics, health and alerts -----------------------------------------------------------------------------------
# /metrics (Prometheus text format) answers a request bearing this token (Authorization: Bearer …) and signed-in
# staff; with no token set, only staff. /healthz answers anyone and says only which checks pass.
METRICS_TOKEN = secret("METRICS_TOKEN", "")
# /metrics is measured at most this often (Prometheus scrapes every 15-60 s; several scrapers share one measure).
METRICS_CACHE_SECONDS = env.int("METRICS_CACHE_SECONDS", default=10)
# The dashboard's heavier figures (the 14-day exception trend, stock freshness) are measured at most this often
# (its cards refresh every 30 s).
DASHBOARD_CACHE_SECONDS = env.int("DASHBOARD_CACHE_SECONDS", default=30)
# Alerts are judged every minute; each is told once when raised and once when it clears, by e-mail to these
# addresses and to a Slack-compatible incoming webhook (either may be left empty).
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_WEBHOOK_URL = secret("ALERT_WEBHOOK_URL", "")
# Stock: a channel with more than this share of its SKUs holding a change it has not confirmed for
# STOCK_STALE_MINUTES, or any one SKU waiting longer than ALERT_STOCK_STALE_MAX_MINUTES (0: only the share counts).
ALERT_STOCK_STALE_SHARE = env.float("ALERT_STOCK_STALE_SHARE", default=0.05)
ALERT_STOCK_STALE_MAX_MINUTES = env.int("ALERT_STOCK_STALE_MAX_MINUTES", default=360)
# Orders: more than this many open order_stalled exceptions.
ALERT_ORDERS_STALLED = env.int("ALERT_ORDERS_STALLED", default=10)
# Exceptions: more new ones in the last hour than ALERT_EXCEPTIONS_PER_HOUR, or than ALERT_EXCEPTIONS_SPIKE_FACTOR
# times the hourly average of the ALERT_EXCEPTIONS_BASELINE_HOURS before it (never for ALERT_EXCEPTIONS_SPIKE_MIN or
# fewer).
ALERT_EXCEPTIONS_PER_HOUR = env.int("ALERT_EXCEPTIONS_PER_HOUR", default=200)
ALERT_EXCEPTIONS_SPIKE_FACTOR = env.float("ALERT_EXCEPTIONS_SPIKE_FACTOR", default=5.0)
ALERT_EXCEPTIONS_SPIKE_MIN = env.int("ALERT_EXCEPTIONS_SPIKE_MIN", default=20)
ALERT_EXCEPTIONS_BASELINE_HOURS = env.int("ALERT_EXCEPTIONS_BASELINE_HOURS", default=24)
# Connections: more than this many open api_unavailable or auth_failed exceptions against one system.
ALERT_CONNECTION_FAILURES = env.int("ALERT_CONNECTION_FAILURES", default=0)
# The worker: no heartbeat for WORKER_HEARTBEAT_STALE_AFTER seconds (above).
