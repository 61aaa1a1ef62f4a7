"""Settings come from the environment; the production settings pass Django's deployment checks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("Q_", "DATABASE_URL"))}
    env.update(environment)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def settings_value(expression: str, **environment: str) -> str:
    result = run_python(
        f"import django; django.setup(); from django.conf import settings; print({expression})",
        DJANGO_SETTINGS_MODULE="console.settings.base",
        **environment,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_embedded_default_is_sqlite_and_the_database_broker(tmp_path):
    assert settings_value("settings.DATABASES['default']['ENGINE']", SWITCHYARD_VAR_DIR=str(tmp_path)) == (
        "django.db.backends.sqlite3"
    )
    assert settings_value("settings.Q_CLUSTER.get('orm'), 'redis' in settings.Q_CLUSTER") == "default False"


def test_database_url_and_q_broker_url_move_it_to_postgresql_and_redis():
    engine = settings_value(
        "settings.DATABASES['default']['ENGINE'], settings.Q_CLUSTER['redis'], 'orm' in settings.Q_CLUSTER",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/switchyard",
        Q_BROKER_URL="redis://127.0.0.1:6379/3",
    )
    assert engine == "django.db.backends.postgresql redis://127.0.0.1:6379/3 False"


def test_a_retry_not_above_the_timeout_is_refused():
    result = run_python(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="console.settings.base",
        Q_TIMEOUT="300",
        Q_RETRY="300",
    )
    assert result.returncode != 0
    assert "Q_RETRY (300s) must be greater than Q_TIMEOUT (300s)." in result.stderr


def test_the_production_settings_pass_the_deployment_checks():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "console.settings.production",
            "SECRET_KEY": "k" * 20 + "-a-long-random-production-secret-value-0123456789",
            "ALLOWED_HOSTS": "switchyard.example.com",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_production_settings_demand_a_secret_key():
    result = run_python(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="console.settings.production",
        ALLOWED_HOSTS="switchyard.example.com",
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
