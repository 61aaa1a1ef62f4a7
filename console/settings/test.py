"""Tests run against a real PostgreSQL (TEST_DATABASE_URL), never SQLite."""

from .base import *  # noqa: F403
from .base import env, tune_database

DATABASES = {
    "default": tune_database(env.db("TEST_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/switchyard"))
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Each test builds its own clients; the few tests of the shared budget turn it on.
RATE_LIMITS_SHARED = False
# Figures the console keeps for a few seconds in production are measured afresh on every request in tests.
METRICS_CACHE_SECONDS = 0
DASHBOARD_CACHE_SECONDS = 0
